"""The search page's HTTP API (``mte.web.app``) against a real engine, and the ``python -m mte.serve`` entry point.

One tiny bag-of-words model is trained in-process on the session's synthetic MARD (≈20 s) and shared by every
test here and by tests/test_serve_browser.py. Uploads use real files: AcousticBrainz documents from tests/data,
and a short WAV synthesised on the fly for the Essentia path (skipped when Essentia is not installed).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, run_module

fastapi = pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'mte[web]'")
from fastapi.testclient import TestClient  # noqa: E402

from mte.search.engine import SearchEngine  # noqa: E402
from mte.search.essentia import essentia_available  # noqa: E402
from mte.web.app import STATIC_DIR, Settings, UploadRejected, create_app, sniff_upload  # noqa: E402

ACOUSTICBRAINZ = sorted((REPO / "tests" / "data" / "acousticbrainz").glob("*.json"))
needs_essentia = pytest.mark.skipif(not essentia_available(), reason="Essentia (the audio extra) is not installed")


# ------------------------------------------------------------------------------------------------------ fixtures
def tiny_checkpoint(session_tmp: Path, raw: Path, processed: Path) -> Path:
    """A 2-epoch bag-of-words checkpoint on the session's synthetic MARD, trained once per test session."""
    run_dir = session_tmp / "serve-run"
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    if ckpt.is_file():
        return ckpt
    from hydra import compose, initialize_config_dir

    from mte.train.run import run

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[
            "data=mard", f"data.raw_dir={raw}", f"data.processed_dir={processed}", "data.features=seed369",
            "data.split=album", "data.vocab.min_albums=1", "data.batch_size=32",  # the shared fixture's settings
            "trainer.max_epochs=2", "logger=none", f"paths.output_dir={run_dir}", "callbacks.projector=null",
            "test=false",
        ])
    run(cfg)
    assert ckpt.is_file(), sorted(run_dir.rglob("*"))
    return ckpt


def write_wav(path: Path, seconds: float = 6.0, seed: int = 0) -> Path:
    """A short mono WAV with a pitch, noise and a beat: enough for every stage of the music extractor."""
    sr = 44100
    t = np.arange(int(sr * seconds)) / sr
    rng = np.random.default_rng(seed)
    x = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(t.size)
    x += (np.mod(t, 0.5) < 0.03) * rng.standard_normal(t.size) * 0.5
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def ckpt(session_tmp: Path, synthetic_raw: Path, processed_dir: Path) -> Path:
    return tiny_checkpoint(session_tmp, synthetic_raw, processed_dir)


@pytest.fixture(scope="module")
def engine(ckpt: Path) -> SearchEngine:
    return SearchEngine.from_checkpoint(ckpt)


@pytest.fixture(scope="module")
def client(engine: SearchEngine) -> Iterator[TestClient]:
    with TestClient(create_app(engine, Settings(k=5, max_upload_mb=1, max_pending_jobs=2))) as c:
        yield c


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wav(tmp_path_factory.mktemp("audio") / "tone.wav")


def a_word(engine: SearchEngine) -> str:
    """A word the model knows: the most frequent non-special vocabulary entry."""
    vocab = engine.model.data.vocabulary()
    word = vocab.id_to_token(2)
    assert word and vocab.encode(word)[:1] == [2], word
    return word


def wait_for_job(client: TestClient, job_id: str, timeout: float = 120.0) -> tuple[dict, list[dict]]:
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/api/jobs/{job_id}")
        assert r.status_code == 200, r.text
        seen.append(r.json())
        if seen[-1]["status"] in ("done", "error"):
            return seen[-1], seen
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {seen[-1]}")


# ------------------------------------------------------------------------------------------------------ the page
def test_page_and_static_files_are_served_and_self_contained(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for needle in ('id="query"', 'id="file"', 'id="results"', 'id="map"', "static/app.js", "static/style.css"):
        assert needle in page.text
    for name in ("app.js", "style.css", "index.html"):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and r.text
        # nothing is fetched from the internet at run time: no CDN, no web fonts
        text = (STATIC_DIR / name).read_text()
        assert "//cdn" not in text and "@import" not in text and "fonts.googleapis" not in text
        assert not [u for u in text.split() if u.startswith(("src=\"http", "href=\"http"))]
    assert (STATIC_DIR / "screenshot.png").stat().st_size < 300_000


def test_info_and_map_describe_the_gallery(client, engine):
    info = client.get("/api/info").json()
    assert info["counts"] == engine.gallery.counts() and info["k"] == 5 and info["max_upload_mb"] == 1
    assert info["text_backbone"] == "bow" and info["audio_available"] == essentia_available()
    m = client.get("/api/map").json()
    assert [a["amazon_id"] for a in m["albums"]] == engine.map_2d()["amazon_id"]
    xs = np.array([[a["x"], a["y"]] for a in m["albums"]])
    assert xs.min() >= 0 and xs.max() <= 1 and xs.std(axis=0).min() > 0.05
    assert sum(g["count"] for g in m["genres"]) == len(m["albums"])
    counts = [g["count"] for g in m["genres"]]
    assert counts == sorted(counts, reverse=True)  # the legend lists the big genres first
    assert "PCA" in m["method"]


# ------------------------------------------------------------------------------------------------------ search
def test_text_search_is_the_engines_ranking_with_the_query_on_the_map(client, engine):
    q = f"{a_word(engine)} music"
    r = client.get("/api/search", params={"q": q, "k": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = engine.by_text(q, k=7)
    assert [h["amazon_id"] for h in body["albums"]] == [h.amazon_id for h in expected]
    scores = [h["score"] for h in body["albums"]]
    assert scores == sorted(scores, reverse=True) and scores == pytest.approx([h.score for h in expected])
    assert all({"artist", "title", "genre", "snippets"} <= h.keys() for h in body["albums"])
    assert any(h["snippets"] for h in body["albums"])
    assert body["reviews"] == [] and body["kind"] == "text"
    x, y = body["map"]["query"]
    assert -0.02 <= x <= 1.02 and -0.02 <= y <= 1.02
    assert len(client.get("/api/search", params={"q": q}).json()["albums"]) == 5  # the configured default k


@pytest.mark.parametrize(
    ("params", "status", "fragment"),
    [
        ({"q": ""}, 400, "empty query"),
        ({"q": "   "}, 400, "empty query"),
        ({"q": "qwxzkj vbnmpl"}, 400, "vocabulary"),
        ({"q": "rock", "k": 0}, 422, "k:"),
        ({"q": "rock", "k": 10_000}, 422, "k:"),
        ({"q": "rock", "k": "ten"}, 422, "k:"),
        ({"q": "x" * 2001}, 422, "q:"),
    ],
)
def test_bad_searches_get_one_line_messages(client, params, status, fragment):
    r = client.get("/api/search", params=params)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and fragment in detail and "\n" not in detail


# ------------------------------------------------------------------------------------------------------ uploads
@pytest.mark.parametrize("doc", ACOUSTICBRAINZ, ids=lambda p: p.name[:10])
def test_acousticbrainz_upload_is_answered_at_once(client, engine, doc):
    r = client.post("/api/upload", params={"k": 4}, files={"file": (doc.name, doc.read_bytes(), "application/json")})
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    reviews, albums = engine.by_descriptor(doc, k=4)
    assert [h["amazon_id"] for h in result["albums"]] == [h.amazon_id for h in albums]
    assert [h["review_idx"] for h in result["reviews"]] == [h.review_idx for h in reviews]
    assert all(h["snippet"] for h in result["reviews"]) and len(result["map"]["query"]) == 2
    assert result["query"] == doc.name and result["kind"] == "descriptor"


@pytest.mark.parametrize(
    ("name", "content", "status", "fragment"),
    [
        ("broken.json", b'{"lowlevel": {"mfcc": ', 400, "broken.json: broken descriptor"),
        ("list.json", b"[1, 2, 3]", 400, "list.json: broken descriptor"),
        ("other.json", b'{"hello": "world"}', 400, "other.json: unusable descriptor"),
        ("empty.mp3", b"", 400, "empty.mp3 is empty"),
        ("notes.txt", b"just some text, not music", 400, "notes.txt is neither an audio file"),
        ("fake.mp3", b"hello, I am not an mp3" * 10, 400, "its name says audio"),
        ("image.png", b"\x89PNG\r\n\x1a\n" + bytes(200), 400, "neither an audio file"),
        ("huge.wav", b"RIFF\x00\x00\x00\x00WAVE" + bytes(1_100_000), 413, "1 MB upload limit"),
    ],
)
def test_bad_uploads_get_clear_messages_and_the_server_keeps_serving(client, engine, name, content, status, fragment):
    r = client.post("/api/upload", files={"file": (name, content, "application/octet-stream")})
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert fragment in detail and "\n" not in detail and "/tmp" not in detail, detail
    assert client.get("/api/search", params={"q": a_word(engine)}).status_code == 200


def test_oversized_upload_is_refused_from_its_length_before_it_is_read(client):
    r = client.post("/api/upload", files={"file": ("big.mp3", b"ID3" + bytes(3 * 1024 * 1024), "audio/mpeg")})
    assert r.status_code == 413 and r.json()["detail"] == "the upload is larger than the 1 MB limit"
    assert not any(Path(client.app.state.workdir).iterdir())


def test_upload_without_a_file_is_a_one_line_422(client):
    r = client.post("/api/upload")
    assert r.status_code == 422 and r.json()["detail"].startswith("file:")


def test_unknown_job_is_404(client):
    r = client.get("/api/jobs/doesnotexist")
    assert r.status_code == 404 and "no such job" in r.json()["detail"]


@needs_essentia
def test_audio_upload_runs_as_a_job_with_stage_progress(client, engine, wav):
    r = client.post("/api/upload", params={"k": 3}, files={"file": ("my tone.wav", wav.read_bytes(), "audio/wav")})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    final, seen = wait_for_job(client, job_id)
    assert final["status"] == "done", final
    result = final["result"]
    assert len(result["albums"]) == 3 and len(result["reviews"]) == 3 and result["query"] == "my tone.wav"
    # the result is the engine's answer for the same audio, described in-process
    reviews, albums = engine.by_descriptor(engine.describe_audio(wav), k=3)
    assert [h["amazon_id"] for h in result["albums"]] == [h.amazon_id for h in albums]
    assert [h["review_idx"] for h in result["reviews"]] == [h.review_idx for h in reviews]
    # progress only moves forward and ends at 1; the job's temp files are gone
    fractions = [s["progress"] for s in seen if s["progress"] is not None]
    assert fractions == sorted(fractions) and final["progress"] == 1.0 and final["elapsed_s"] > 0
    assert not any(Path(client.app.state.workdir).iterdir())


@needs_essentia
def test_corrupt_audio_fails_its_job_with_a_message(client, engine):
    junk = b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"not really an mp3 frame " * 50
    r = client.post("/api/upload", files={"file": ("broken.mp3", junk, "audio/mpeg")})
    assert r.status_code == 202, r.text
    final, _ = wait_for_job(client, r.json()["job_id"])
    assert final["status"] == "error" and "Essentia cannot describe this file" in final["error"], final
    assert "/tmp" not in final["error"] and "\n" not in final["error"]
    assert client.get("/api/search", params={"q": a_word(engine)}).status_code == 200


def test_sniffing_recognises_audio_containers():
    assert sniff_upload(b"ID3\x04", "a.mp3") == "audio"
    assert sniff_upload(b"\xff\xfb\x90\x64", "a.mp3") == "audio"  # bare MPEG frame
    assert sniff_upload(b"RIFF\x24\x08\x00\x00WAVEfmt ", "a.wav") == "audio"
    assert sniff_upload(b"fLaC\x00\x00", "x.bin") == "audio"
    assert sniff_upload(b"OggS\x00\x02", "x") == "audio"
    assert sniff_upload(b"\x00\x00\x00\x20ftypM4A ", "a.m4a") == "audio"
    assert sniff_upload(b"FORM\x00\x00\x00\x00AIFF", "a.aiff") == "audio"
    assert sniff_upload(b'\xef\xbb\xbf  {"a": 1}', "doc") == "json"
    assert sniff_upload(b"garbage", "doc.json") == "json"  # the JSON parser words that error
    with pytest.raises(UploadRejected, match="neither"):
        sniff_upload(b"%PDF-1.7", "paper.pdf")


# ------------------------------------------------------------------------------------------------ concurrency
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live_server(engine: SearchEngine) -> Iterator[str]:
    """The app under a real uvicorn on a free loopback port, in a thread (concurrency needs real sockets)."""
    import uvicorn

    port = free_port()
    app = create_app(engine, Settings(k=5, max_upload_mb=20, max_pending_jobs=1))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@needs_essentia
def test_parallel_searches_are_answered_while_audio_is_analysed(live_server, engine, tmp_path):
    import httpx

    word = a_word(engine)
    long_wav = write_wav(tmp_path / "long.wav", seconds=120.0, seed=1)  # ~10 s of Essentia
    with httpx.Client(base_url=live_server, timeout=60) as http:
        r = http.post("/api/upload", files={"file": ("long.wav", long_wav.read_bytes(), "audio/wav")})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        # a second upload while the first is being analysed: the queue (max_pending_jobs=1) is full → 429
        busy = http.post("/api/upload", files={"file": ("again.wav", long_wav.read_bytes(), "audio/wav")})
        assert busy.status_code == 429 and "try again" in busy.json()["detail"]

        def one(i: int) -> tuple[int, float, list[str]]:
            start = time.perf_counter()
            resp = http.get("/api/search", params={"q": f"{word} {i}", "k": 5})
            ids = [h["amazon_id"] for h in resp.json().get("albums", [])]
            return resp.status_code, time.perf_counter() - start, ids

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(one, range(24)))
        during = http.get(f"/api/jobs/{job_id}").json()
        assert all(status == 200 for status, _, _ in results)
        assert all(ids == [h.amazon_id for h in engine.by_text(f"{word} {i}", k=5)]
                   for i, (_, _, ids) in enumerate(results))
        # searches did not wait for Essentia: they were all answered while the job was still running
        assert during["status"] in ("queued", "running"), during
        deadline = time.monotonic() + 180
        while (job := http.get(f"/api/jobs/{job_id}").json())["status"] not in ("done", "error"):
            assert time.monotonic() < deadline, job
            time.sleep(0.25)
        assert job["status"] == "done", job
        doc = ACOUSTICBRAINZ[0].read_bytes()
        assert http.post("/api/upload", files={"file": ("doc.json", doc)}).status_code == 200


# ------------------------------------------------------------------------------------------------ entry point
@pytest.mark.slow
def test_serve_cli_bad_checkpoint_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    for args, fragment in (
        ([f"ckpt_path={bad}"], "not a usable mte checkpoint"),
        ([f"ckpt_path={tmp_path / 'missing.ckpt'}"], "checkpoint not found"),
        ([], "ckpt_path is required"),
    ):
        proc = run_module("mte.serve", *args, f"port={free_port()}", cwd=tmp_path, check=False, timeout=120)
        assert proc.returncode == 2, (proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert lines[-1].startswith("error: ") and fragment in lines[-1], proc.stderr
        assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.ckpt"]  # hydra left no litter


@pytest.mark.slow
def test_serve_cli_busy_port_is_one_line_exit_2(tmp_path, ckpt):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = run_module("mte.serve", f"ckpt_path={ckpt}", f"port={port}", cwd=tmp_path, check=False, timeout=120)
    assert proc.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in proc.stderr, proc.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_serve_cli_serves_the_api(tmp_path, ckpt):
    """``python -m mte.serve`` as a user runs it: it prints its URL, answers the API, stops on SIGINT."""
    import signal
    import subprocess
    import sys

    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mte.serve", f"ckpt_path={ckpt}", f"port={port}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the engine is loaded
        assert line.startswith(f"serving http://127.0.0.1:{port}/"), (line, proc.stderr.read() if proc.poll() else "")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for _ in range(100):
                try:
                    info = http.get("/api/info").json()
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            assert info["counts"]["albums"] > 0
            assert http.get("/").status_code == 200
            doc = json.loads(ACOUSTICBRAINZ[0].read_text())
            r = http.post("/api/upload", files={"file": ("doc.json", json.dumps(doc).encode())})
            assert r.status_code == 200 and r.json()["result"]["albums"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert not list(tmp_path.iterdir())
