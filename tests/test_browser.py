"""The page, end to end: headless Chromium (Debian's chromium, driven by Playwright) against a real
server. Needs /usr/bin/chromium and playwright (both come with `make install`); without them the test
is skipped, except under CI where it fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tiny_runs import slow_model, tiny_checkpoint, wait_idle

from sedlm.serve import Limits, create_app, server_thread

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
TEMPLATE = "The king [___] in the [___:2]."


def _missing(what: str) -> None:
    message = f"{what}; run `make install` (it installs Debian chromium and playwright)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed")
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    app = create_app(tiny_checkpoint(tmp_path_factory.mktemp("browser") / "sed"), Limits())
    with server_thread(app) as base:
        yield base


def _open(owner, url: str, **kw):
    """A new page (of a browser or a context) on the app, once it has read /v1/model."""
    page = owner.new_page(**kw)
    page.goto(url + "/")
    page.wait_for_selector('body[data-ready="true"]')
    return page


def _start(page, text: str, steps: int) -> None:
    page.fill("#text", text)
    page.fill("#steps", str(steps))
    page.fill("#seed", "1")
    page.click("#generate")


def test_template_settles_step_by_step(browser, url, tmp_path):
    context = browser.new_context(viewport={"width": 1000, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    page = _open(context, url)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.fill("#text", TEMPLATE)
    assert page.inner_text("#mode") == "mode: infill"
    _start(page, TEMPLATE, steps=8)
    page.wait_for_selector('#output[data-state="done"]')
    seen = page.get_attribute("#output", "data-steps-seen")
    assert seen == ",".join(str(i) for i in range(1, 9))  # each step's text replaced the last
    assert page.inner_text("#counter").startswith("done: 8 steps")
    final = page.inner_text("#output .sample")
    assert final.startswith("The king") and " in the" in final and final.endswith(".")
    # the model's words are marked apart from the template's: given pieces and generated pieces alternate
    pieces = page.eval_on_selector_all("#output .sample > *", "els => els.map(e => [e.tagName, e.textContent])")
    assert "".join(t for _, t in pieces) == final
    assert "".join(t for tag, t in pieces if tag == "SPAN") == "The king in the."  # the template's own text
    assert any(tag == "MARK" for tag, _ in pieces)  # the fixed-length blank is always written
    assert page.inner_text("#error") == ""
    page.click("#copy")
    assert page.evaluate("navigator.clipboard.readText()") == final
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert (tmp_path / "page.png").stat().st_size > 0 and not errors
    context.close()


def test_narrow_screen_has_no_horizontal_overflow(browser, url, tmp_path):
    page = _open(browser, url, viewport={"width": 375, "height": 740})
    _start(page, "The king", steps=3)  # a prompt: the controls, the counter and the text must fit
    page.wait_for_selector('#output[data-state="done"]')
    assert page.inner_text("#mode") == "mode: prompt"
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.screenshot(path=str(tmp_path / "narrow.png"), full_page=True)
    page.close()


def test_errors_are_shown(browser, url):
    page = _open(browser, url)
    _start(page, "the king [___:400]", steps=3)
    page.wait_for_selector('#output[data-state="error"]')
    assert "sequence length" in page.inner_text("#error")
    page.close()


def test_stop_ends_the_sampling(browser, tmp_path):
    model, calls = slow_model(tiny_checkpoint(tmp_path / "slow"))
    app = create_app(model)
    with server_thread(app) as base:
        page = _open(browser, base)
        _start(page, "", steps=1000)
        page.wait_for_function("document.getElementById('output').dataset.stepsSeen.length > 0")
        page.click("#stop")
        page.wait_for_selector('#output[data-state="stopped"]')
        assert wait_idle(app.state.runner) and len(calls) < 500
        page.close()
