// mte search page: vanilla JS, no dependencies. Talks to the JSON API in mte/web/app.py:
//   GET /api/info, GET /api/map, GET /api/search?q=&k=, POST /api/upload, GET /api/jobs/{id}
"use strict";

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";
// Tableau-like categorical palette: distinct at a glance, readable on white. Genres beyond it share grey.
const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
                 "#9c755f", "#1b9e77", "#7570b3", "#d95f02", "#66a61e", "#e7298a", "#a6761d", "#17becf"];
const OTHER = "#b8b8b8";
const POLL_MS = 500;

const state = { info: null, map: null, colors: new Map(), byId: new Map(), busy: false, pollTimer: null, tick: null };

// ---------- small helpers ----------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}
function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}
async function api(url, options) {
  let resp;
  try {
    resp = await fetch(url, options);
  } catch (e) {
    throw new Error("the server cannot be reached (is `python -m mte.serve` still running?)");
  }
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    const detail = body && (body.detail || body.error);
    throw new Error(typeof detail === "string" ? detail : `the server answered ${resp.status} ${resp.statusText}`);
  }
  return { status: resp.status, body };
}
function fmtScore(s) { return Number(s).toFixed(3); }
function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}
function setBusy(busy) {
  state.busy = busy;
  $("search-btn").disabled = busy;
  $("upload-btn").disabled = busy;
  document.body.classList.toggle("busy", busy);
  $("results").classList.toggle("stale", busy);  // old results stay readable but clearly not the answer yet
}

// ---------- progress ----------
function showProgress(label, fraction, elapsed) {
  $("progress").hidden = false;
  $("progress-label").textContent = label;
  const bar = $("progress").querySelector(".bar");
  const fill = $("progress-fill");
  if (fraction === null || fraction === undefined) {
    bar.classList.add("indeterminate");
    bar.removeAttribute("aria-valuenow");
    fill.style.width = "";
  } else {
    bar.classList.remove("indeterminate");
    const pct = Math.round(fraction * 100);
    bar.setAttribute("aria-valuenow", String(pct));
    fill.style.width = pct + "%";
  }
  $("progress-elapsed").textContent = elapsed !== undefined ? `${elapsed.toFixed(0)} s` : "";
}
function hideProgress() {
  $("progress").hidden = true;
  if (state.tick) { clearInterval(state.tick); state.tick = null; }
}

// ---------- map ----------
function genreColor(genre) {
  return state.colors.get(genre || "unknown") || OTHER;
}
function buildLegend(genres) {
  const legend = $("legend");
  legend.replaceChildren();
  genres.forEach((g, i) => {
    const color = i < PALETTE.length ? PALETTE[i] : OTHER;
    state.colors.set(g.name, color);
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = color;
    legend.append(el("li", { title: `${g.count} albums` }, swatch, `${g.name} `, el("span", { class: "count", text: String(g.count) })));
  });
}
const MAP_W = 560, MAP_H = 460, PAD = 14;
function mx(x) { return PAD + x * (MAP_W - 2 * PAD); }
function my(y) { return PAD + (1 - y) * (MAP_H - 2 * PAD); }

function drawMap(data) {
  state.map = data;
  buildLegend(data.genres);
  const root = svg("svg", { viewBox: `0 0 ${MAP_W} ${MAP_H}`, role: "img", "aria-label": "albums in the shared embedding space, coloured by genre" });
  root.append(svg("rect", { x: 0, y: 0, width: MAP_W, height: MAP_H, class: "map-bg" }));
  const points = svg("g", { class: "albums" });
  for (const a of data.albums) {
    state.byId.set(a.amazon_id, a);
    const c = svg("circle", { cx: mx(a.x).toFixed(1), cy: my(a.y).toFixed(1), r: 3.2, fill: genreColor(a.genre), class: "album-point" });
    const t = svg("title");
    t.textContent = `${a.artist || "?"} — ${a.title || "?"} (${a.genre || "unknown"})`;
    c.append(t);
    points.append(c);
  }
  root.append(points);
  root.append(svg("g", { id: "map-overlay" }));
  $("map").replaceChildren(root);
  $("map-caption").textContent = `${data.albums.length} albums · ${data.method}`;
  $("map-caption").title = "albums are placed by a 2-D PCA of their audio embeddings; nearby = similar sound";
}

function highlightOnMap(result) {
  const overlay = document.getElementById("map-overlay");
  if (!overlay) return;
  overlay.replaceChildren();
  overlay.ownerSVGElement.classList.toggle("highlighted", result.albums.length > 0);
  const m = result.map || {};
  const q = m.query;
  const hits = result.albums.map((h) => state.byId.get(h.amazon_id)).filter(Boolean);
  if (q) {
    for (const a of hits) {
      overlay.append(svg("line", { x1: mx(q[0]), y1: my(q[1]), x2: mx(a.x), y2: my(a.y), class: "hit-link" }));
    }
  }
  hits.forEach((a, i) => {
    const g = svg("g", { class: "hit-point", "data-rank": String(i + 1), "data-id": a.amazon_id });
    g.append(svg("circle", { cx: mx(a.x), cy: my(a.y), r: 8, fill: genreColor(a.genre), class: "hit-ring" }));
    const label = svg("text", { x: mx(a.x), y: my(a.y) + 3.5, class: "hit-rank" });
    label.textContent = String(i + 1);
    g.append(label);
    const t = svg("title");
    t.textContent = `#${i + 1} ${a.artist || "?"} — ${a.title || "?"}`;
    g.append(t);
    overlay.append(g);
  });
  if (q) {
    const g = svg("g", { class: "query-point", transform: `translate(${mx(q[0])},${my(q[1])})` });
    g.append(svg("path", { d: starPath(11, 4.6), class: "query-star" }));
    const t = svg("title");
    t.textContent = "your query";
    g.append(t);
    overlay.append(g);
  }
  $("map-caption").textContent = q
    ? `★ your query and its top ${hits.length} albums · ${state.map.method}`
    : `${state.map.albums.length} albums · ${state.map.method}`;
}
function starPath(outer, inner) {
  const pts = [];
  for (let i = 0; i < 10; i++) {
    const r = i % 2 ? inner : outer;
    const a = (Math.PI / 5) * i - Math.PI / 2;
    pts.push(`${(r * Math.cos(a)).toFixed(2)},${(r * Math.sin(a)).toFixed(2)}`);
  }
  return "M" + pts.join("L") + "Z";
}

// ---------- results ----------
function genreBadge(genre) {
  const b = el("span", { class: "genre", text: genre || "unknown genre" });
  b.style.setProperty("--genre", genreColor(genre));
  return b;
}
function renderResults(result) {
  const box = $("results");
  box.replaceChildren();
  box.append(el("p", { class: "summary", text: result.summary }));
  const list = el("ol", { class: "albums", id: "album-results" });
  result.albums.forEach((h, i) => {
    const head = el("div", { class: "hit-head" },
      el("span", { class: "rank", text: String(i + 1) }),
      el("span", { class: "who" }, el("span", { class: "artist", text: h.artist || "unknown artist" }), " — ",
        el("span", { class: "title", text: h.title || "untitled" })),
      genreBadge(h.genre),
      el("span", { class: "score", title: "cosine similarity in the shared space", text: fmtScore(h.score) }));
    const item = el("li", { class: "album-hit", "data-id": h.amazon_id }, head);
    if (h.snippets && h.snippets.length) {
      const snips = el("ul", { class: "snippets" });
      for (const s of h.snippets) snips.append(el("li", { text: s, title: "click to show the whole snippet" }));
      item.append(snips);
    }
    item.addEventListener("mouseenter", () => focusHit(h.amazon_id, true));
    item.addEventListener("mouseleave", () => focusHit(h.amazon_id, false));
    list.append(item);
  });
  if (!result.albums.length) box.append(el("p", { class: "placeholder", text: "No albums matched." }));
  box.append(list);
  if (result.reviews && result.reviews.length) {
    box.append(el("h3", { text: "Closest reviews" }));
    const rl = el("ol", { class: "reviews", id: "review-results" });
    for (const r of result.reviews) {
      rl.append(el("li", { class: "review-hit" },
        el("div", { class: "hit-head" },
          el("span", { class: "who" }, el("span", { class: "artist", text: r.artist || "unknown artist" }), " — ",
            el("span", { class: "title", text: r.title || "untitled" })),
          genreBadge(r.genre),
          el("span", { class: "score", text: fmtScore(r.score) })),
        el("p", { class: "snippet", text: r.snippet })));
    }
    box.append(rl);
  }
  highlightOnMap(result);
}
// a click on a clamped snippet shows all of it
document.addEventListener("click", (ev) => {
  const t = ev.target;
  if (t instanceof Element && (t.matches(".snippets li") || t.matches(".snippet"))) t.classList.toggle("open");
});
function focusHit(id, on) {
  const g = document.querySelector(`#map-overlay .hit-point[data-id="${CSS.escape(id)}"]`);
  if (g) g.classList.toggle("focus", on);
}

// ---------- actions ----------
async function search(query) {
  if (state.busy) return;
  showError("");
  setBusy(true);
  showProgress("searching…", null);
  try {
    const k = state.info ? state.info.k : 10;
    const { body } = await api(`api/search?q=${encodeURIComponent(query)}&k=${k}`);
    renderResults(body);
    history.replaceState(null, "", `?q=${encodeURIComponent(query)}`);
  } catch (e) {
    showError(e.message);
  } finally {
    hideProgress();
    setBusy(false);
  }
}

async function upload(file) {
  if (state.busy) return;
  showError("");
  const limit = state.info ? state.info.max_upload_mb : null;
  if (file.size === 0) { showError(`${file.name} is empty`); return; }
  if (limit && file.size > limit * 1024 * 1024) {
    showError(`${file.name} is ${(file.size / 1048576).toFixed(1)} MB; the limit is ${limit} MB`);
    return;
  }
  setBusy(true);
  showProgress(`uploading ${file.name}…`, null);
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const k = state.info ? state.info.k : 10;
    const { status, body } = await api(`api/upload?k=${k}`, { method: "POST", body: form });
    if (status === 200 && body.result) {
      renderResults(body.result);
      hideProgress();
      setBusy(false);
      return;
    }
    await followJob(body.job_id);
  } catch (e) {
    showError(e.message);
    hideProgress();
    setBusy(false);
  }
}

function followJob(jobId) {
  // Poll the job; the elapsed counter ticks between polls so the page never looks frozen.
  return new Promise((resolve) => {
    let last = { progress: null, message: "queued", elapsed_s: 0 };
    let lastAt = performance.now();
    const paint = () => {
      const elapsed = last.status === "running" ? last.elapsed_s + (performance.now() - lastAt) / 1000 : undefined;
      let label = last.message;
      if (last.status === "queued" && last.queue_position) label = `queued (position ${last.queue_position})`;
      showProgress(label, last.progress, elapsed);
    };
    state.tick = setInterval(paint, 250);
    const finish = (err) => {
      if (err) showError(err);
      hideProgress();
      setBusy(false);
      resolve();
    };
    const poll = async () => {
      try {
        const { body } = await api(`api/jobs/${jobId}`);
        last = body; lastAt = performance.now();
        paint();
        if (body.status === "done") { renderResults(body.result); finish(null); return; }
        if (body.status === "error") { finish(`${body.filename}: ${body.error}`); return; }
      } catch (e) {
        finish(e.message);
        return;
      }
      state.pollTimer = setTimeout(poll, POLL_MS);
    };
    poll();
  });
}

// ---------- start-up ----------
async function init() {
  $("search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = $("query").value.trim();
    if (q) search(q);
  });
  $("upload-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = $("file").files[0];
    if (!f) { showError("choose a file first"); return; }
    upload(f);
  });
  try {
    const { body: info } = await api("api/info");
    state.info = info;
    $("model-info").textContent = info.description;
    $("upload-hint").textContent = info.audio_available
      ? `An audio file (analysed with Essentia's music extractor, ~30 s per track) or an AcousticBrainz ` +
        `low-level JSON document; at most ${info.max_upload_mb} MB.`
      : `An AcousticBrainz low-level JSON document (at most ${info.max_upload_mb} MB). Audio files need ` +
        `Essentia, which is not installed here: pip install 'mte[audio]'.`;
    const { body: map } = await api("api/map");
    drawMap(map);
  } catch (e) {
    showError(e.message);
  }
  document.body.dataset.ready = "true";
  const q = new URLSearchParams(location.search).get("q");
  if (q) { $("query").value = q; search(q); }
}
init();
