"""The app in a real browser: Home -> Map -> lasso -> another study; Data -> Cohorts -> Map -> Chat with the
real default model; then side by side.

Starts ``streamlit run app.py`` on a free port with the bundled sample study
and drives Debian's chromium through Playwright (sync API). Screenshots of
each page go to tests/artifacts/. ``make test`` installs chromium when it is
missing and we are root; without chromium the test is skipped only when we
are not root (as root, as in CI, a missing browser is a failure).
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        if os.geteuid() != 0:
            pytest.skip("no /usr/bin/chromium and not root to install it (apt-get install chromium)")
        pytest.fail("/usr/bin/chromium is missing: `make test` installs it (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def app_url(served):
    return served[0]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``(url, server process)`` of ``streamlit run app.py`` with the real default model."""
    port = _free_port()
    env = {**os.environ, "PERSONA_ENGINE_STUDIES": str(tmp_path_factory.mktemp("studies"))}
    env.pop("PERSONA_ENGINE_MODEL", None)  # the real default model
    streamlit = shutil.which("streamlit", path=str(Path(sys.executable).parent)) or "streamlit"
    log = open(tmp_path_factory.mktemp("server") / "streamlit.log", "w")
    server = subprocess.Popen(
        [streamlit, "run", "app.py", "--server.port", str(port), "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--", "--study", "sample_data/studies/gss_spending"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError(f"streamlit did not start, see {log.name}") from None
                time.sleep(0.5)
        yield url, server
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def settled(page, timeout: float = 120) -> None:
    """Wait until the script run ends (Streamlit's running indicator goes away)."""
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')",
                           timeout=timeout * 1000)


def snap(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_home_page_then_a_lasso_on_the_map_that_a_study_switch_clears(browser, app_url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(app_url)
    page.get_by_role("heading", name="Persona Engine").wait_for(timeout=90_000)
    settled(page)
    assert page.get_by_text("not what real people said").is_visible()
    assert page.get_by_text("2,348 respondents × 18 questions").is_visible()
    page.get_by_text("Soft prompt, held-out accuracy").wait_for(timeout=60_000)  # the headline figures
    assert page.get_by_text("0.625", exact=True).is_visible()
    assert not page.get_by_text("Deploy", exact=True).count()  # client.toolbarMode = "viewer"
    snap(page, "home")

    page.get_by_role("button", name="Open the map").click()
    plot = page.locator(".js-plotly-plot .nsewdrag").first
    plot.wait_for(timeout=60_000)
    settled(page)
    plot.hover()
    page.locator('.modebar-btn[data-val="lasso"]').first.click(force=True)
    box = plot.bounding_box()
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    corners = [(0.15, 0.15), (0.85, 0.15), (0.85, 0.85), (0.15, 0.85), (0.15, 0.2)]
    page.mouse.move(x0 + w * corners[0][0], y0 + h * corners[0][1])
    page.mouse.down()
    for fx, fy in corners[1:]:
        page.mouse.move(x0 + w * fx, y0 + h * fy, steps=8)
    page.mouse.up()
    selection = page.get_by_text(re.compile(r"^Selection: [\d,]+ respondents"))
    selection.wait_for(timeout=60_000)
    settled(page)
    # drawn in the same run as the selection's heading, which may still be streaming in
    page.get_by_role("button", name=re.compile(r"Chat with this selection")).wait_for(timeout=60_000)
    snap(page, "map_selection")

    page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").click()
    page.get_by_role("option", name="brexit-consensus (sample)").click()
    page.get_by_test_id("stSidebar").get_by_text("Can there be consensus on Brexit?").wait_for(timeout=60_000)
    settled(page)
    page.locator(".js-plotly-plot .nsewdrag").first.wait_for(timeout=60_000)
    assert page.get_by_role("heading", name="Latent map").is_visible()
    selection.wait_for(state="detached", timeout=30_000)  # the old run's elements go when the new run ends
    settled(page)
    assert page.get_by_text("Chat with this selection").count() == 0
    snap(page, "map_other_study")


def test_data_cohorts_map_chat_with_the_real_model(browser, app_url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{app_url}/data")
    page.get_by_role("heading", name="Data").wait_for(timeout=90_000)
    settled(page)
    page.get_by_text("Missing answers").wait_for(timeout=60_000)  # the page's run may still be drawing
    navigation = page.get_by_test_id("stSidebarNav").inner_text()
    assert "Steer" in navigation and "widgets" not in navigation  # the app's navigation, not a listing of app_pages/
    snap(page, "data")

    page.get_by_test_id("stSidebarNav").get_by_text("Cohorts").click()
    page.get_by_role("heading", name="Cohort 0").wait_for(timeout=60_000)
    settled(page)
    snap(page, "cohorts")

    page.get_by_test_id("stSidebarNav").get_by_text("Map").click()
    page.locator(".js-plotly-plot .nsewdrag").first.wait_for(timeout=60_000)
    settled(page)
    x_input = page.get_by_label("x", exact=True)
    before = x_input.input_value()
    area = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    page.mouse.click(area["x"] + area["width"] * 0.9, area["y"] + area["height"] * 0.1)
    page.wait_for_function(f"() => document.querySelector('input[aria-label=\"x\"]').value !== '{before}'",
                           timeout=30_000)
    settled(page)
    snap(page, "map")

    page.get_by_role("button", name="Chat with this point").click()
    page.get_by_role("heading", name="Chat").wait_for(timeout=60_000)
    settled(page, timeout=180)  # the first load of the model
    assert page.get_by_text("simulation of a persona").is_visible()
    page.get_by_test_id("stChatInputTextArea").fill("Should the government spend more on welfare?")
    page.keyboard.press("Enter")
    # The transcript buttons are drawn once the streamed reply is complete.
    page.get_by_role("button", name="Transcript (Markdown)").wait_for(timeout=180_000)
    reply = page.get_by_test_id("stChatMessage").nth(1).get_by_test_id("stMarkdownContainer")
    assert len(" ".join(reply.all_inner_texts()).strip()) > 10
    snap(page, "chat")


def test_side_by_side_cohorts_whose_majorities_differ_take_different_stances(browser, app_url):
    """Cohorts 0 and 1 of the sample study disagree on welfare (too little / about right)."""
    import numpy as np

    from persona_engine.opinion_data import MISSING
    from persona_engine.study import Study

    study = Study.load(ROOT / "sample_data/studies/gss_spending")
    j = study.data.question_index("natfare")
    majority = [np.bincount(column[column != MISSING]).argmax()
                for column in (study.data.answers[study.labels == c, j] for c in (0, 1))]
    assert majority[0] != majority[1]  # the premise of this test

    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.goto(f"{app_url}/chat")
    page.get_by_role("heading", name="Chat").wait_for(timeout=180_000)
    settled(page, timeout=180)
    page.get_by_text("Side by side", exact=True).click()
    settled(page)
    page.get_by_test_id("stChatInputTextArea").fill("What do you think about government spending on welfare?")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Transcript (Markdown)").wait_for(timeout=240_000)
    chips = [t.strip() for t in page.get_by_text(re.compile(r"^stance: ")).all_inner_texts()]
    assert len(chips) >= 3  # cohort 0, cohort 1 and the unsteered model
    labels = study.data.questions[j].options
    assert chips[0] == f"stance: {labels[majority[0]]}" and chips[1] == f"stance: {labels[majority[1]]}"
    snap(page, "side_by_side")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, all its threads (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_served_app_at_rest_keeps_no_core_busy(browser, served):
    """No file watcher re-walking the repository (.streamlit/config.toml): idle means idle."""
    url, server = served
    page = browser.new_page()
    page.goto(url)
    page.get_by_text(re.compile(r"Language model SmolLM2.*: ready")).wait_for(timeout=180_000)
    settled(page)
    time.sleep(2)
    before = cpu_seconds(server.pid)
    time.sleep(10)
    used = cpu_seconds(server.pid) - before
    print(f"idle server CPU: {used:.2f} s over 10 s")
    assert used < 1.0, f"the idle app used {used:.2f} s of CPU in 10 s"
