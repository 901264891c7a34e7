"""A real browser against the real server: Playwright drives Debian's headless Chromium.

The app (trained model, NumPy scorer) runs under waitress on 127.0.0.1 in a
thread. The test opens the dashboard, checks that the charts rendered (plotly.js
and Bootstrap from local files), fills the customer form, submits it and checks
the result page; it also submits a bad value and checks the message beside the
field. Screenshots go to reports/screenshots/ (gitignored).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from conftest import chromium_path

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[1] / "reports" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def server(trained_model):
    from waitress import create_server

    from sparkify.webapp import create_app

    app = create_app(trained_model)
    srv = create_server(app, host="127.0.0.1", port=0, threads=4)
    def run():
        try:
            srv.run()
        except (OSError, ValueError):  # the listening socket closed under select() at shutdown
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.effective_port}", app.extensions["sparkify"]
    srv.close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    if not executable:
        pytest.skip("no Chromium found (apt-get install chromium, or set CHROMIUM_PATH): browser test skipped")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    pg.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
          if msg.type == "error" and "400" not in msg.text else None)
    external: list[str] = []
    pg.on("request", lambda req: external.append(req.url)
          if not req.url.startswith(("http://127.0.0.1", "data:", "blob:", "about:")) else None)
    pg.problems, pg.external = problems, external
    yield pg
    context.close()


def test_dashboard_form_submit_and_result(server, page):
    base, bundle = server
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(base + "/")
    page.wait_for_selector(".plotly-graph-div .main-svg")  # plotly.js loaded and drew
    assert page.locator(".plotly-graph-div").count() >= 5
    # Bootstrap's CSS applied (primary button is coloured, not the browser default)
    colour = page.eval_on_selector("#predict", "e => getComputedStyle(e).backgroundColor")
    assert colour not in ("rgba(0, 0, 0, 0)", "rgb(239, 239, 239)", "rgb(240, 240, 240)")
    page.screenshot(path=str(SCREENSHOTS / "master.png"), full_page=True)

    # the first fields shown (the most influential inputs); the rest are folded away
    shown = set(page.eval_on_selector_all("#key-fields [name]", "els => els.map(e => e.name)"))
    assert shown and len(shown) <= len(bundle.specs)
    numeric = [s for s in bundle.specs if s.numeric and s.name in shown]
    chosen = {}
    for spec in numeric[:3]:
        value = round(spec.p99 if spec.p99 is not None else spec.train_max, 3)
        page.fill(f"#f-{spec.name}", str(value))
        chosen[spec.name] = value
    categorical = [s for s in bundle.specs if not s.numeric]
    if page.locator("#more-fields").count():
        page.click("#more-fields summary")  # unfold the other inputs
    for spec in categorical[:1]:
        page.select_option(f"#f-{spec.name}", spec.categories[-1])
        chosen[spec.name] = spec.categories[-1]
    # what the browser will send: the (rounded) medians shown plus the values typed
    record = {s.name: (float(page.input_value(f"#f-{s.name}")) if s.numeric
                       else page.input_value(f"#f-{s.name}")) for s in bundle.specs}
    for name, value in chosen.items():
        assert record[name] == value
    page.click("#predict")
    page.wait_for_selector("#result")
    assert "/go?" in page.url
    expected = bundle.model.predict([record])
    probability = float(expected["probability"][0])
    assert page.inner_text("#probability").strip() == f"{100 * probability:.1f}%"
    decision = page.inner_text("#decision")
    assert ("Likely to churn" in decision) == bool(expected["decision"][0])
    assert page.inner_text("#band").strip() == f"{expected['band'][0]} risk"
    assert page.locator("#reasons tbody tr").count() == len(bundle.model.explain(record, top=5))
    page.screenshot(path=str(SCREENSHOTS / "go.png"), full_page=True)

    assert not page.problems, page.problems
    assert not page.external, f"requests left the machine: {page.external}"


def test_bad_value_shows_message_beside_field(server, page):
    base, bundle = server
    page.goto(base + "/")
    page.wait_for_selector("#customer-form")
    shown = set(page.eval_on_selector_all("#key-fields [name]", "els => els.map(e => e.name)"))
    spec = next(s for s in bundle.specs if s.numeric and s.lo == 0 and s.name in shown)
    # bypass the browser's own min/max check to reach the server's validation
    page.eval_on_selector("#customer-form", "f => f.noValidate = true")
    page.fill(f"#f-{spec.name}", "-5")
    page.click("#predict")
    page.wait_for_selector(f"#e-{spec.name}")
    assert "must not be negative" in page.inner_text(f"#e-{spec.name}")
    assert page.locator(f"#f-{spec.name}.is-invalid").count() == 1
    page.screenshot(path=str(SCREENSHOTS / "bad-input.png"), full_page=True)
    assert not page.external
