"""The web page in headless Chromium (Debian's `chromium`, driven by playwright; no browser download)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.redis]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def test_ask_watch_steps_open_citation_copy_bibtex(browser, service: dict, tmp_path: Path) -> None:
    context = browser.new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=service["url"])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(service["url"] + "/")
    page.fill("#api-key", service["keys"]["alice"])
    page.fill("#question", "Does vitamin D supplementation improve bone mineral density?")
    page.click("#ask")
    page.wait_for_selector("#answer button.cite", timeout=60_000)
    assert page.text_content("#status") == "done"
    steps = page.eval_on_selector_all("#steps li", "els => els.map(e => [e.dataset.step, e.className])")
    assert len(steps) >= 2 and all(cls == "finished" for _, cls in steps), steps
    answer_text = page.text_content("#answer")
    assert len(answer_text) > 40 and "[" in answer_text
    # A citation opens the passage it cites.
    cite = page.locator("#answer button.cite").first
    ref_id = int(cite.get_attribute("data-ref"))
    cite.click()
    assert page.is_visible("#passage")
    title = page.text_content("#passage-title")
    shown = page.text_content("#passage-text")
    cited = page.evaluate(f"passages.get({ref_id})")
    assert title == f"[{ref_id}] {cited['title']}" and shown == cited["text"] and len(shown) > 50
    page.screenshot(path=str(tmp_path / "answer.png"), full_page=True)
    page.click("#passage-close")
    assert not page.is_visible("#passage")
    # Copy BibTeX puts the entries on the clipboard.
    page.click("#copy-bibtex")
    page.wait_for_function("document.getElementById('copy-status').textContent === 'copied'")
    clip = page.evaluate("navigator.clipboard.readText()")
    assert clip.startswith("@misc{") and clip == page.text_content("#bibtex")
    assert not errors, errors
    context.close()


def test_bad_key_shows_the_error(browser, service: dict) -> None:
    page = browser.new_page()
    page.goto(service["url"] + "/")
    page.fill("#api-key", "osk_wrong")
    page.fill("#question", "Is sleep important?")
    page.click("#ask")
    page.wait_for_function("document.getElementById('status').className === 'error'")
    assert "API key is not valid" in page.text_content("#status")
    page.close()
