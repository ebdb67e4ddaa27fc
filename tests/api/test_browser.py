"""The web page in headless Chromium (Debian's `chromium`, driven by playwright; no browser download).

A real question through the page (queued with its position, then running with readable step names
and seconds, then the answer with support marks and references numbered from 1), the marks for every
sentence status, and the layout on a desktop and on a 390 px phone screen (screenshots; set
OPENSCHOLAR_SCREENSHOTS=DIR to keep them).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.redis]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
RECORD_STATUS = """() => { window.__statuses = [];
  new MutationObserver(() => window.__statuses.push(document.getElementById('status').textContent))
    .observe(document.getElementById('status'), {childList: true, characterData: true, subtree: true}); }"""

# An Answer as the API returns it: sentences in every status, a citation added by verification,
# reference ids that are not 1..n (the page numbers them from 1).
ANSWER = {
    "question": "Does vitamin D improve bone density?", "task": "long_form", "judge": "lexical",
    "text": "Vitamin D raises bone mineral density in older adults [4]. It halves fracture risk. "
            "It lowers bone density [7]. Calcium matters too [7].",
    "sentences": [
        {"text": "Vitamin D raises bone mineral density in older adults.", "citations": [4], "supported": True,
         "attributed": False, "status": "supported"},
        {"text": "It halves fracture risk.", "citations": [], "supported": False, "attributed": False,
         "status": "unsupported"},
        {"text": "It lowers bone density.", "citations": [], "supported": False, "attributed": False,
         "status": "contradicted"},
        {"text": "Calcium matters too.", "citations": [7], "supported": True, "attributed": True},
    ],
    "references": [
        {"id": 7, "title": "Calcium and bone: a randomized trial with a long title that must wrap on a phone",
         "text": "Calcium supplementation and bone density " * 20, "year": 2019, "authors": ["A. Author", "B. Author"],
         "paper_id": "p7"},
        {"id": 4, "title": "Vitamin D supplementation in older adults", "text": "Vitamin D raised BMD. " * 20,
         "year": 2021, "authors": ["C. Author"], "paper_id": "p4", "url": "https://example.org/p4"},
    ],
    "passages": [], "bibtex": "@misc{p4,\n  title = {Vitamin D}\n}\n",
}
STEPS = [
    {"step": "retrieve", "status": "finished", "elapsed_ms": 812.0, "detail": {"passages": 10}},
    {"step": "generate", "status": "finished", "elapsed_ms": 23456.0, "detail": {}},
    {"step": "retrieve", "status": "finished", "elapsed_ms": 120.0, "detail": {"feedback_index": 0, "query": "fracture risk"}},
    {"step": "verify", "status": "finished", "elapsed_ms": 1500.0,
     "detail": {"sentences": 4, "supported": 2, "attributed": 1}},
]


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def _keep(path: Path) -> None:
    target = os.environ.get("OPENSCHOLAR_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def test_ask_queue_steps_answer_citation_bibtex(browser, service: dict, alice, tmp_path: Path) -> None:
    # Keep the one worker busy so the page's question waits in the queue first.
    ahead = alice.post("/v1/batches", json={"questions": [f"Is coffee {i} bad for sleep?" for i in range(16)],
                                            "options": {"feedback": False}}).json()
    context = browser.new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=service["url"])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(service["url"] + "/")
    page.evaluate(RECORD_STATUS)
    page.fill("#api-key", service["keys"]["alice"])
    page.fill("#question", "Does vitamin D supplementation improve bone mineral density?")
    page.uncheck("#opt-feedback")
    page.click("#ask")
    page.wait_for_selector("#answer button.cite", timeout=120_000)
    statuses = page.evaluate("window.__statuses")
    queued = [s for s in statuses if s.startswith("Queued: position")]
    assert queued, statuses
    assert any(s.startswith("Running") for s in statuses), statuses
    assert statuses.index(queued[0]) < max(i for i, s in enumerate(statuses) if s.startswith("Running"))
    assert page.text_content("#status").startswith("Done in "), page.text_content("#status")
    steps = page.eval_on_selector_all("#steps li", "els => els.map(e => [e.className, e.textContent])")
    assert len(steps) >= 3 and all(cls == "finished" for cls, _ in steps), steps
    labels = " | ".join(text for _, text in steps)
    assert "Searching the literature" in labels and "Writing a first answer" in labels, labels
    assert "Checking every citation" in labels and " s" in labels and "passages found" in labels, labels
    # References are numbered 1..n; citations in the text use the same numbers.
    nums = page.eval_on_selector_all("#references .num", "els => els.map(e => e.textContent)")
    assert nums == [f"[{i}]" for i in range(1, len(nums) + 1)], nums
    cites = page.eval_on_selector_all("#answer button.cite", "els => els.map(e => e.textContent.replace('+', ''))")
    assert set(cites) <= set(nums) and "[1]" in cites, (cites, nums)
    marks = page.eval_on_selector_all("#answer .mark", "els => els.map(e => e.className)")
    assert marks and all(m.split()[1] in ("supported", "unsupported", "contradicted") for m in marks), marks
    assert page.is_visible("#legend")
    # A citation opens the passage it cites.
    cite = page.locator("#answer button.cite").first
    ref_id = int(cite.get_attribute("data-ref"))
    shown_number = cite.text_content().replace("+", "")
    cite.click()
    assert page.is_visible("#passage")
    cited = page.evaluate(f"passages.get({ref_id})")
    assert page.text_content("#passage-title") == f"{shown_number} {cited['title']}"
    assert page.text_content("#passage-text") == cited["text"] and len(cited["text"]) > 50
    page.click("#passage-close")
    assert not page.is_visible("#passage")
    page.click("#copy-bibtex")
    page.wait_for_function("document.getElementById('copy-status').textContent === 'copied'")
    clip = page.evaluate("navigator.clipboard.readText()")
    assert clip.startswith("@misc{") and clip == page.text_content("#bibtex")
    assert not errors, errors
    context.close()
    alice.delete(f"/v1/batches/{ahead['id']}")


def test_support_marks_and_reference_numbers(browser, service: dict) -> None:
    page = browser.new_page()
    page.goto(service["url"] + "/")
    page.evaluate("answer => renderAnswer(answer)", ANSWER)
    spans = page.eval_on_selector_all("#answer .sentence", "els => els.map(e => e.className)")
    assert spans == ["sentence supported", "sentence unsupported", "sentence contradicted", "sentence supported"]
    marks = page.eval_on_selector_all("#answer .mark", "els => els.map(e => [e.textContent, e.title])")
    assert [m[0] for m in marks] == ["✓", "?", "✗", "✓"] and "contradicts" in marks[2][1]
    cites = page.eval_on_selector_all("#answer button.cite", "els => els.map(e => [e.textContent, e.className, e.title])")
    assert cites[0][:2] == ["[1]", "cite"], cites  # id 4 is cited first: number 1
    assert cites[1][0] == "[2]+" and "added" in cites[1][1] and "added by verification" in cites[1][2], cites
    refs = page.eval_on_selector_all("#references li", "els => els.map(e => e.textContent)")
    assert refs[0].startswith("[1]Vitamin D supplementation") and refs[1].startswith("[2]Calcium"), refs
    assert "C. Author · 2021" in refs[0]
    # Without the new `status` field (an older Answer), marks follow `supported`.
    older = {**ANSWER, "sentences": [{k: v for k, v in s.items() if k != "status"} for s in ANSWER["sentences"]]}
    page.evaluate("answer => renderAnswer(answer)", older)
    spans = page.eval_on_selector_all("#answer .sentence", "els => els.map(e => e.dataset.status)")
    assert spans == ["supported", "unsupported", "unsupported", "supported"]
    # A partial answer says so, naming the step that ran out of time.
    page.evaluate("answer => renderAnswer(answer)", {**ANSWER, "partial": True, "partial_step": "feedback"})
    assert "Partial answer" in page.text_content("#partial-note") and "self-feedback" in page.text_content("#partial-note")
    page.close()


@pytest.mark.parametrize(("name", "width", "height"), [("desktop", 1280, 900), ("mobile", 390, 844)])
def test_layout_desktop_and_390px(browser, service: dict, tmp_path: Path, name: str, width: int, height: int) -> None:
    context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1)
    page = context.new_page()
    page.goto(service["url"] + "/")
    page.fill("#question", "Does vitamin D supplementation improve bone mineral density in older adults?")
    page.evaluate("""([answer, steps]) => { document.getElementById('steps-section').hidden = false;
        steps.forEach(addStep); renderAnswer(answer); setStatus('Done in 25 s', 'done'); }""", [ANSWER, STEPS])
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= width, f"{name}: the page is {overflow} px wide in a {width} px viewport"
    for box_id in ("opt-feedback", "opt-verify"):
        box = page.locator(f"#{box_id}").bounding_box()
        text = page.locator(f"label:has(#{box_id}) span").bounding_box()
        assert box["width"] < 30 and box["x"] + box["width"] <= text["x"], (name, box, text)
        assert abs(box["y"] - text["y"]) < 12, f"{name}: checkbox and its label are not on one line"
        assert text["x"] + text["width"] <= width
    steps = page.eval_on_selector_all("#steps li", "els => els.map(e => e.textContent)")
    assert steps[0].startswith("Searching the literature0.8 s") and "23 s" in steps[1], steps
    assert steps[2].startswith("Searching for more evidence: fracture risk"), steps
    shot = tmp_path / f"page-{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    _keep(shot)
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
