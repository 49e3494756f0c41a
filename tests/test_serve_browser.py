"""The search page in a real headless Chromium, against ``python -m mte.serve`` running as a user starts it.

Why Selenium (not Playwright): Debian packages ``chromium`` and ``chromium-driver`` built from the same source, so
the driver always speaks the browser's protocol version; Playwright pins its own browser build (which it would
download with ``playwright install``, impossible here) and only loosely supports others. Nothing is downloaded:
the driver and browser paths are given explicitly, so Selenium Manager never runs. ``scripts/install_browser.sh``
installs both packages (CI calls it); without them these tests skip with that hint locally and fail in CI
(``CI=true``; conftest.require).

The server is a subprocess on a free loopback port with the tiny checkpoint of tests/test_serve.py. The real
4:50 track (``<repo>/../shared/data/audio/machine_wars.mp3``) goes through Essentia (~30-60 s here) when present.
Set ``MTE_SCREENSHOT=path.png`` to keep a 1280×900 screenshot of the page with text-search results.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SHARED = REPO.parent / "shared" / "data"
REAL_TRACK = SHARED / "audio" / "machine_wars.mp3"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")

selenium = pytest.importorskip("selenium", reason="selenium is not installed: pip install 'mte[dev]'")
pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'mte[web]'")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from test_serve import free_port, tiny_checkpoint  # noqa: E402

from mte.search.essentia import essentia_available  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _chromium(require_resource) -> None:
    """Before the (slow) server fixture: the browser is there, or the module skips (locally) / fails (CI)."""
    require_resource(CHROMIUM.is_file() and CHROMEDRIVER.is_file(),
                     f"{CHROMIUM} or {CHROMEDRIVER} missing: run scripts/install_browser.sh (Debian's chromium and "
                     "chromium-driver)")


def acousticbrainz_doc() -> Path:
    """A real AcousticBrainz document: the shared copy when there is one, else the repo's test copy."""
    shared = sorted((SHARED / "acousticbrainz").glob("*.json"))
    return shared[0] if shared else sorted((REPO / "tests" / "data" / "acousticbrainz").glob("*.json"))[0]


@pytest.fixture(scope="module")
def server(session_tmp: Path, synthetic_raw: Path, processed_dir: Path, tmp_path_factory) -> Iterator[str]:
    """``python -m mte.serve`` on a free loopback port; its URL once it answers."""
    ckpt = tiny_checkpoint(session_tmp, synthetic_raw, processed_dir)
    cwd = tmp_path_factory.mktemp("serve-cwd")
    port = free_port()
    log = (cwd.parent / "serve.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "mte.serve", f"ckpt_path={ckpt}", f"port={port}"],
                            cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    import httpx

    while True:
        try:
            if httpx.get(url + "api/info", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            proc.kill()
            raise AssertionError(f"mte.serve did not come up:\n{log.read()[-3000:]}")
        time.sleep(0.25)
    yield url
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    assert not list(cwd.iterdir()), "mte.serve left files in its working dir"


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    profile = tempfile.mkdtemp(prefix="mte-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}", "--window-size=1280,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        # make the *viewport* 1280×900 (the window size includes the browser's own frame)
        inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
        driver.set_window_size(2560 - inner[0], 1800 - inner[1])
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: webdriver.Chrome, condition, timeout: float = 30.0, message: str = ""):  # type: ignore[no-untyped-def]
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition, message)


def open_page(driver: webdriver.Chrome, url: str) -> None:
    driver.get(url)
    wait(driver, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"), message="page not ready")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#map circle.album-point"), message="no map")


def visible(driver: webdriver.Chrome, css: str) -> WebElement | None:
    found = [e for e in driver.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]
    return found[0] if found else None


def upload(driver: webdriver.Chrome, path: Path) -> None:
    driver.find_element(By.ID, "file").send_keys(str(path.resolve()))
    driver.find_element(By.ID, "upload-btn").click()


def result_rows(driver: webdriver.Chrome) -> list[dict]:
    return driver.execute_script("""
        return [...document.querySelectorAll('#album-results li.album-hit')].map(li => ({
          rank: li.querySelector('.rank').textContent, artist: li.querySelector('.artist').textContent,
          title: li.querySelector('.title').textContent, genre: li.querySelector('.genre').textContent,
          score: parseFloat(li.querySelector('.score').textContent),
          snippets: li.querySelectorAll('.snippets li').length}));""")


def assert_map_highlights(driver: webdriver.Chrome, n_results: int) -> None:
    assert len(driver.find_elements(By.CSS_SELECTOR, "#map-overlay .query-point")) == 1
    ranks = [g.get_attribute("data-rank") for g in driver.find_elements(By.CSS_SELECTOR, "#map-overlay .hit-point")]
    assert ranks == [str(i) for i in range(1, n_results + 1)]
    assert "query" in driver.find_element(By.ID, "map-caption").text


def test_text_search_shows_ranked_results_and_highlights_the_map(server, browser, session_tmp):
    open_page(browser, server)
    n_albums = len(browser.find_elements(By.CSS_SELECTOR, "#map circle.album-point"))
    legend = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#legend li")]
    assert n_albums > 50 and len(legend) >= 3 and sum(int(t.split()[-1]) for t in legend) == n_albums
    assert "albums" in browser.find_element(By.ID, "model-info").text

    vocab_word = _first_vocab_word(session_tmp)  # a word the 2-epoch model surely knows
    box = browser.find_element(By.ID, "query")
    box.send_keys(f"{vocab_word} guitar")
    browser.find_element(By.ID, "search-btn").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#album-results li.album-hit"), message="no results")
    rows = result_rows(browser)
    assert len(rows) == 10 and [r["rank"] for r in rows] == [str(i) for i in range(1, 11)]
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert all(r["artist"] and r["title"] and r["genre"] for r in rows) and any(r["snippets"] for r in rows)
    assert visible(browser, "#error") is None
    assert_map_highlights(browser, 10)
    assert "q=" in browser.current_url  # the query is in the URL: reload or share it
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
    shot = Path(os.environ.get("MTE_SCREENSHOT") or session_tmp / "serve-screenshot.png")
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000


def _first_vocab_word(session_tmp: Path) -> str:
    from mte.data.processed import ProcessedData

    vocab = ProcessedData.load(session_tmp / "processed-small").vocabulary()
    return str(vocab.id_to_token(2))


def test_broken_json_upload_shows_the_error_and_the_page_keeps_working(server, browser, tmp_path):
    open_page(browser, server)
    broken = tmp_path / "broken.json"
    broken.write_text('{"lowlevel": {"mfcc": {"mean": [1, 2,')
    upload(browser, broken)
    error = wait(browser, lambda d: visible(d, "#error"), message="no error message shown")
    assert "broken.json" in error.text and "broken descriptor" in error.text
    assert visible(browser, "#progress") is None and browser.find_element(By.ID, "upload-btn").is_enabled()

    not_audio = tmp_path / "notes.txt"
    not_audio.write_text("these are my notes, not music")
    upload(browser, not_audio)
    wait(browser, lambda d: "neither an audio file" in d.find_element(By.ID, "error").text)

    # the server and the page still work
    box = browser.find_element(By.ID, "query")
    box.clear()
    box.send_keys("great album")
    browser.find_element(By.ID, "search-btn").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#album-results li.album-hit"))
    assert visible(browser, "#error") is None


def test_acousticbrainz_upload_shows_reviews_albums_and_the_map(server, browser):
    open_page(browser, server)
    doc = acousticbrainz_doc()
    upload(browser, doc)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#review-results li.review-hit"), message="no reviews")
    assert doc.name in browser.find_element(By.CSS_SELECTOR, "#results .summary").text
    rows = result_rows(browser)
    reviews = browser.find_elements(By.CSS_SELECTOR, "#review-results li.review-hit")
    assert len(rows) == 10 and len(reviews) == 10
    assert all(r.find_element(By.CSS_SELECTOR, ".snippet").text for r in reviews)
    assert_map_highlights(browser, 10)


@pytest.mark.skipif(not essentia_available(), reason="Essentia (the audio extra) is not installed")
@pytest.mark.timeout(400)
def test_real_track_upload_shows_progress_then_results(require_resource, server, browser):
    require_resource(REAL_TRACK.is_file(), f"the real track is not here: {REAL_TRACK} (the shared dir beside the repo)")
    open_page(browser, server)
    upload(browser, REAL_TRACK)
    # the indicator appears with Essentia's stage and a ticking clock, and moves forward
    seen: list[tuple[str, str, str]] = []
    deadline = time.monotonic() + 300
    while not browser.find_elements(By.CSS_SELECTOR, "#review-results li.review-hit"):
        assert time.monotonic() < deadline, f"no results after 300 s; progress seen: {seen[-5:]}"
        assert visible(browser, "#error") is None, browser.find_element(By.ID, "error").text
        state = browser.execute_script("""
            const p = document.getElementById('progress');
            return p.hidden ? null : [document.getElementById('progress-label').textContent,
              document.querySelector('#progress .bar').getAttribute('aria-valuenow') || '',
              document.getElementById('progress-elapsed').textContent];""")
        if state:
            seen.append(tuple(state))
        time.sleep(0.5)
    labels = {label for label, _, _ in seen}
    assert any("audio features" in label for label in labels), labels
    values = [int(v) for _, v, _ in seen if v]
    assert values and values == sorted(values) and max(values) >= 44, values
    clocks = [int(e.split()[0]) for _, _, e in seen if e]
    assert clocks and max(clocks) >= 5, clocks  # the elapsed time ticks while Essentia works
    assert "machine_wars.mp3" in browser.find_element(By.CSS_SELECTOR, "#results .summary").text
    assert len(result_rows(browser)) == 10 and visible(browser, "#progress") is None
    assert_map_highlights(browser, 10)
