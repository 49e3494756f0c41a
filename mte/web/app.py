"""The search page's server: a FastAPI app over one :class:`~mte.search.engine.SearchEngine`, plus static files.

Endpoints (all JSON; errors are ``{"detail": "<one line>"}`` with a 4xx status)::

    GET  /                   the page (static/index.html; app.js and style.css under /static)
    GET  /api/info           model and gallery facts, limits (k, max upload size), whether audio is supported
    GET  /api/map            the album gallery's 2-D map: points (x, y in [0, 1]) with genre, and the legend
    GET  /api/search?q=&k=   text → albums; with the query's place on the map
    POST /api/upload?k=      multipart ``file``: an AcousticBrainz JSON (answered at once, 200) or an audio file
                             (202 + a job id: Essentia takes ~30 s per track)
    GET  /api/jobs/{id}      an upload job: status, progress, message, elapsed time; its result once done

Why this shape: the engine is loaded once (seconds to minutes: it embeds the whole gallery) and then only read,
so every request shares it; the few tensor operations of a query run under one lock, because they take
milliseconds and a lock is cheaper to reason about than the thread-safety of every tokenizer and torch kernel.
Audio extraction, the only slow thing, runs in a child process managed by :class:`~mte.web.jobs.JobManager`, so
searches are answered while a track is being analysed.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from mte.search.engine import SearchEngine
from mte.search.errors import SearchError
from mte.search.essentia import AUDIO_SUFFIXES, essentia_available
from mte.web.extract import ExtractionError, run_extraction, stop_all
from mte.web.jobs import JobManager, Progress, QueueFull

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_K = 100
_CHUNK = 1 << 20
# multipart headers and boundaries around the file: a body this much over the limit may still hold a legal file
_FORM_OVERHEAD = 64 * 1024


@dataclass(frozen=True)
class Settings:
    """What the server needs besides the engine (``conf/serve.yaml`` documents each)."""

    k: int = 10
    max_upload_mb: float = 50.0
    max_pending_jobs: int = 4
    extract_timeout_s: float = 600.0

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class UploadRejected(ValueError):
    """An upload refused before any processing; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def sniff_upload(head: bytes, filename: str) -> str:
    """``"json"`` or ``"audio"`` from a file's first bytes (and its name); :class:`UploadRejected` otherwise.

    A ``.json`` name counts as JSON whatever the content, so a broken document gets the JSON parser's message
    ("broken descriptor …") rather than "not audio".
    """
    suffix = Path(filename).suffix.lower()
    stripped = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if suffix == ".json" or stripped[:1] in (b"{", b"["):
        return "json"
    if _looks_like_audio(head):
        return "audio"
    hint = " (its name says audio, its content does not)" if suffix in AUDIO_SUFFIXES else ""
    raise UploadRejected(
        f"{filename} is neither an audio file (mp3, wav, flac, ogg, m4a, aiff, wma …) nor an AcousticBrainz JSON "
        f"document{hint}"
    )


def _looks_like_audio(head: bytes) -> bool:
    """Signatures of containers FFmpeg (Essentia's loader) reads: refuse non-audio before ~30 s of Essentia."""
    if head[:3] == b"ID3" or head[:4] in (b"fLaC", b"OggS", b".snd", b"\x1aE\xdf\xa3", b"MThd"):
        return True
    if head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"AVI "):
        return True
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return True
    if head[4:8] == b"ftyp":  # MPEG-4 audio (m4a, mp4, aac in mp4)
        return True
    if head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"):  # ASF (wma)
        return True
    # a bare MPEG audio (mp3 without ID3) or ADTS AAC stream: an 11-bit frame sync
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0


class SearchService:
    """The engine behind a lock, and the JSON shapes the page reads. Safe to share between request threads."""

    def __init__(self, engine: SearchEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._lock = threading.Lock()
        self._audio = essentia_available()  # imports Essentia once, at start-up rather than in a request
        with self._lock:
            self._map = self._build_map()  # also fits the PCA once, before any request can race on it

    # -- payloads ------------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        info = self.engine.info
        counts = info["counts"]
        return {
            "checkpoint": Path(info["checkpoint"]).name,
            "text_backbone": info["text_backbone"],
            "feature_set": info["feature_set"],
            "embed_dim": info["embed_dim"],
            "counts": counts,
            "gallery": info["gallery"],
            "k": self.settings.k,
            "max_k": MAX_K,
            "max_upload_mb": self.settings.max_upload_mb,
            "audio_available": self._audio,
            "description": (
                f"{Path(info['checkpoint']).name} · {info['text_backbone']} text · {info['feature_set']} audio · "
                f"{counts['albums']:,} albums · {counts['reviews']:,} reviews"
                + (f" of {Path(info['raw_dir']).name}" if info.get("raw_dir") else "")  # the user's own collection
            ),
        }

    def map(self) -> dict[str, Any]:
        return self._map

    def _build_map(self) -> dict[str, Any]:
        raw = self.engine.map_2d()
        x, y = np.asarray(raw["x"], dtype=np.float64), np.asarray(raw["y"], dtype=np.float64)
        self._bounds = _bounds(x, y)
        nx, ny = self._normalise(np.stack([x, y], axis=1)).T if len(x) else (x, y)
        albums = [
            {"amazon_id": aid, "artist": artist, "title": title, "genre": genre or "unknown",
             "x": round(float(px), 4), "y": round(float(py), 4)}  # 4 decimals: 0.1 px on the map
            for aid, artist, title, genre, px, py in zip(
                raw["amazon_id"], raw["artist"], raw["title"], raw["genre"], nx, ny, strict=True)
        ]
        counts: dict[str, int] = {}
        for a in albums:
            counts[a["genre"]] = counts.get(a["genre"], 0) + 1
        genres = [{"name": g, "count": n} for g, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
        shares = raw.get("explained_variance") or [0.0, 0.0]
        method = f"PCA, {100 * (shares[0] + shares[1]):.0f}% of variance"
        return {"albums": albums, "genres": genres, "method": method}

    def _normalise(self, xy: np.ndarray) -> np.ndarray:
        """Map coordinates → [0, 1] with the gallery's bounds (queries may fall outside; the page clamps)."""
        lo, span = self._bounds
        return (xy - lo) / span

    def _place(self, vector: np.ndarray) -> list[float]:
        xy = self._normalise(self.engine.project(vector).reshape(-1, 2).astype(np.float64))[0]
        return [round(float(np.clip(v, -0.02, 1.02)), 4) for v in xy]

    # -- queries -------------------------------------------------------------------------------------------
    def search_text(self, query: str, k: int) -> dict[str, Any]:
        with self._lock:
            q = self.engine.embed_text(query)
            albums = self.engine.albums_near(q, k)
            place = self._place(q)
        return {
            "kind": "text",
            "query": query,
            "summary": f"Albums whose audio is closest to “{_shorten(query, 80)}”",
            "albums": [asdict(h) for h in albums],
            "reviews": [],
            "map": {"query": place},
        }

    def search_descriptor(self, doc: dict | bytes | Path, k: int, label: str) -> dict[str, Any]:
        with self._lock:
            q = self.engine.embed_descriptor(doc)
            reviews = self.engine.reviews_near(q, k)
            albums = self.engine.albums_near(q, k)
            place = self._place(q)
        return {
            "kind": "descriptor",
            "query": label,
            "summary": f"Albums that sound closest to {label}, and the reviews closest to its sound",
            "albums": [asdict(h) for h in albums],
            "reviews": [asdict(h) for h in reviews],
            "map": {"query": place},
        }


def _bounds(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower corner and size of the map's box (a 5% margin; a degenerate axis gets size 1)."""
    if len(x) == 0:
        return np.zeros(2), np.ones(2)
    lo = np.array([x.min(), y.min()])
    span = np.array([x.max(), y.max()]) - lo
    span = np.where(span > 1e-12, span, 1.0)
    return lo - 0.05 * span, span * 1.1


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_k(k: int | None, settings: Settings) -> int:
    """The request's k, else the configured default (the range is checked by FastAPI: 1..MAX_K)."""
    return settings.k if k is None else k


async def _save_upload(file: UploadFile, dest: Path, limit: int, name: str) -> int:
    """Copy the upload to ``dest`` in chunks, stopping as soon as it exceeds ``limit`` bytes."""
    size = 0
    with dest.open("wb") as out:
        while chunk := await file.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise UploadRejected(f"{name} is larger than the {limit / 1048576:g} MB upload limit", 413)
            out.write(chunk)
    return size


def create_app(engine: SearchEngine, settings: Settings | None = None) -> FastAPI:
    """The app for one loaded engine. Tests build it directly; ``python -m mte.serve`` runs it with uvicorn."""
    settings = settings or Settings()
    service = SearchService(engine, settings)
    jobs = JobManager(max_pending=settings.max_pending_jobs)
    workdir = Path(tempfile.mkdtemp(prefix="mte-serve-"))

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        yield
        jobs.shutdown()
        stop_all()
        shutil.rmtree(workdir, ignore_errors=True)

    app = FastAPI(title="mte search", lifespan=lifespan, docs_url="/api/docs", redoc_url=None)
    app.state.service = service
    app.state.jobs = jobs
    app.state.workdir = workdir
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.middleware("http")
    async def _refuse_large_uploads(request: Request, call_next):  # type: ignore[no-untyped-def]
        """Refuse an oversized upload from its Content-Length, before the body is read and spooled to disk.

        (A body sent without a length is still cut off by :func:`_save_upload`, after the parser spooled it.)
        """
        if request.method == "POST" and request.url.path == "/api/upload":
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > settings.max_upload_bytes + _FORM_OVERHEAD:
                return JSONResponse({"detail": f"the upload is larger than the {settings.max_upload_mb:g} MB limit"},
                                    status_code=413)
        return await call_next(request)

    @app.exception_handler(SearchError)
    async def _search_error(_request: Request, exc: SearchError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(UploadRejected)
    async def _rejected(_request: Request, exc: UploadRejected) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body"))
        return JSONResponse({"detail": f"{where or 'request'}: {first.get('msg', 'invalid')}"}, status_code=422)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/info")
    def api_info() -> dict[str, Any]:
        return service.info()

    @app.get("/api/map")
    def api_map() -> dict[str, Any]:
        return service.map()

    @app.get("/api/search")
    def api_search(
        q: Annotated[str, Query(max_length=2000, description="free-text description of the music")] = "",
        k: Annotated[int | None, Query(ge=1, le=MAX_K)] = None,
    ) -> dict[str, Any]:
        return service.search_text(q, _check_k(k, settings))

    @app.post("/api/upload")
    async def api_upload(
        file: Annotated[UploadFile, File(description="audio file or AcousticBrainz JSON")],
        k: Annotated[int | None, Query(ge=1, le=MAX_K)] = None,
    ) -> JSONResponse:
        name = Path(file.filename or "upload").name or "upload"
        top_k = _check_k(k, settings)
        job_dir = Path(tempfile.mkdtemp(dir=workdir))
        dest = job_dir / ("upload" + Path(name).suffix.lower()[:8])
        handed_over = False
        try:
            size = await _save_upload(file, dest, settings.max_upload_bytes, name)
            if size == 0:
                raise UploadRejected(f"{name} is empty")
            with dest.open("rb") as f:
                kind = sniff_upload(f.read(64), name)
            if kind == "json":
                result = await run_in_threadpool(service.search_descriptor, dest.read_bytes(), top_k, name)
                return JSONResponse({"status": "done", "result": result})
            job = jobs.submit("audio", name, _audio_work(service, dest, name, top_k, settings))
            handed_over = True
            return JSONResponse({"status": job.status, "job_id": job.id, "filename": name}, status_code=202)
        except SearchError as e:
            raise UploadRejected(_strip_label(str(e), name)) from None
        except QueueFull as e:
            raise UploadRejected(str(e), 429) from None
        finally:
            await file.close()
            if not handed_over:
                shutil.rmtree(job_dir, ignore_errors=True)

    @app.get("/api/jobs/{job_id}")
    def api_job(job_id: str) -> dict[str, Any]:
        snapshot = jobs.get(job_id)
        if snapshot is None:
            raise HTTPException(404, f"no such job: {job_id} (finished jobs are kept for a while, then forgotten)")
        return snapshot

    return app


def _strip_label(message: str, name: str) -> str:
    """Engine messages start with "descriptor:"; the page knows the file's name, which says more."""
    return name + message[len("descriptor") :] if message.startswith("descriptor:") else message


def _audio_work(service: SearchService, audio: Path, name: str, k: int, settings: Settings):  # type: ignore[no-untyped-def]
    """The job for an audio upload: extract in a child process, search, clean up the temp files."""

    def work(progress: Progress) -> dict[str, Any]:
        try:
            doc_path = run_extraction(audio, audio.with_suffix(".descriptor.json"), progress,
                                      timeout_s=settings.extract_timeout_s)
            progress(0.99, "searching the embedding space")
            try:
                return service.search_descriptor(doc_path.read_bytes(), k, name)
            except SearchError as e:
                raise ExtractionError(_strip_label(str(e), name)) from None
        finally:
            shutil.rmtree(audio.parent, ignore_errors=True)

    return work
