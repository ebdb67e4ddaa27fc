"""Quote-first evidence: sentence spans, the quote fidelity invariant, MMR with a per-paper cap,
themed sections, yes/no questions as statements, and the evidence answer's text."""

from __future__ import annotations

import json

import numpy as np
import pytest

from openscholar.answer import Reference
from openscholar.evidence import (
    candidates,
    mmr_select,
    quote_fidelity,
    score_by_length,
    section_title,
    select_evidence,
    shortlist,
)
from openscholar.judges.lexical import content_words
from openscholar.sentences import sentence_spans
from openscholar.verdict import statement_of
from tests.conftest import SCIFACT


def test_sentence_spans_cut_the_text_itself():
    text = ("BACKGROUND Smith et al. reported a 2.5-fold rise (Fig. 2). J. Doe disagreed!  Was it real? "
            "Yes: e.g. in mice, i.e. C57BL/6 mice. [3] The end.")
    spans = sentence_spans(text)
    assert [s.text for s in spans] == [
        "BACKGROUND Smith et al. reported a 2.5-fold rise (Fig. 2).", "J. Doe disagreed!", "Was it real?",
        "Yes: e.g. in mice, i.e. C57BL/6 mice.", "[3] The end."]
    assert all(text[s.start:s.end] == s.text for s in spans)


def test_a_letter_after_a_lower_case_word_ends_a_sentence():
    text = ("Requirements for vitamin D. This review will evaluate the evidence. Smith J. A. Jones found it. "
            "As shown in (J. Doe) it holds.")
    assert [s.text for s in sentence_spans(text)] == [
        "Requirements for vitamin D.", "This review will evaluate the evidence.", "Smith J. A. Jones found it.",
        "As shown in (J. Doe) it holds."]


def test_quote_spans_are_verbatim_over_the_scifact_corpus(shared_data):
    """The invariant behind quote fidelity, on every sentence of 1,000 real abstracts."""
    docs = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").read_text().splitlines()[:1000]]
    refs = [Reference(id=i, paper_id=d["_id"], title=d["title"], text=d["text"]) for i, d in enumerate(docs)]
    cands = candidates(refs)
    assert len(cands) > 5000
    assert all(c.reference.text[c.start:c.end] == c.quote and c.quote == c.quote.strip() for c in cands)
    # Every sentence boundary the splitter keeps lies on whitespace in the original text.
    assert all(c.start == 0 or c.reference.text[c.start - 1].isspace() for c in cands)


def test_a_sentence_cut_by_the_passage_boundary_is_never_quoted():
    """A chunk of a longer abstract may end (or start) inside a sentence: quoting the fragment could drop
    the words that decide its meaning ("an increase in the currently" [recommended intake is warranted])."""
    whole = "Vitamin D supplementation increased bone mineral density in the trial group."
    ref = Reference(id=0, paper_id="p", title="t", text=(
        "of the cohort were excluded from the analysis. " + whole + " It led us to suggest that an increase in the currently"))
    assert [c.quote for c in candidates([ref])] == [whole]
    closed = Reference(id=1, paper_id="q", title="t", text=whole + ' The effect was very "large."')
    assert [c.quote for c in candidates([closed])] == [whole, 'The effect was very "large."']


def test_mmr_prefers_a_second_finding_and_caps_papers():
    rel = np.array([1.0, 0.99, 0.98, 0.5, 0.4])
    sim = np.eye(5)
    sim[0, 1] = sim[1, 0] = 0.95  # 1 repeats 0
    papers = ["a", "a", "a", "b", "c"]
    assert mmr_select(rel, sim, papers, k=3, per_paper=2, lam=0.7) == [0, 2, 3]
    assert mmr_select(rel, sim, papers, k=5, per_paper=1, lam=1.0) == [0, 3, 4]  # cap: one quote per paper
    assert mmr_select(rel, sim, papers, k=3, per_paper=3, lam=1.0) == [0, 1, 2]  # relevance only


@pytest.fixture(scope="module")
def quote_scorer():
    from openscholar.evidence import build_quote_scorer
    from openscholar.settings import Settings

    return build_quote_scorer(Settings())


BONE = [
    Reference(id=0, paper_id="p0", title="Vitamin D and bone density in older women", text=(
        "We randomized 300 women over 65 years. Daily vitamin D3 supplementation increased lumbar spine bone mineral "
        "density by 1.8% over two years compared with placebo. Adverse events were rare.")),
    Reference(id=1, paper_id="p1", title="Vitamin D trial in men", text=(
        "Men aged 50 to 70 took vitamin D or placebo. Vitamin D supplementation did not change hip bone mineral "
        "density after one year. Serum 25-hydroxyvitamin D rose in the treated group.")),
    Reference(id=2, paper_id="p2", title="Gut microbiota of infants", text=(
        "Stool samples of 120 infants were sequenced. Breastfed infants carried more bifidobacteria than formula-fed "
        "infants. Antibiotic exposure reduced diversity.")),
]


def test_select_evidence_quotes_the_relevant_sentences(quote_scorer):
    question = "Does vitamin D supplementation improve bone mineral density?"
    evidence, sections = select_evidence(question, BONE, quote_scorer, k=3, per_paper=1)
    refs = {r.id: r for r in BONE}
    assert quote_fidelity(evidence, refs) == 1.0
    assert [e.reference for e in evidence][:2] in ([0, 1], [1, 0])  # one per paper, the bone papers first
    assert "bone mineral density" in evidence[0].quote and "bone mineral density" in evidence[1].quote
    assert sorted(i for s in sections for i in s.evidence) == list(range(len(evidence)))
    assert all(evidence[i].section == n for n, s in enumerate(sections) for i in s.evidence)


def test_shortlist_keeps_the_sentences_sharing_the_question_words():
    question = "Does vitamin D supplementation improve bone mineral density?"
    cands = candidates(BONE)
    kept = shortlist(question, cands, 2)
    assert len(kept) == 2 and kept == sorted(kept)
    assert all("bone mineral density" in cands[i].quote for i in kept)
    assert shortlist(question, cands, None) == shortlist(question, cands, 100) == list(range(len(cands)))


class _LengthScorer:
    """Scores a text by its length and records the order it was fed in."""

    def __init__(self) -> None:
        self.fed: list[str] = []

    def score(self, query: str, texts):
        self.fed += list(texts)
        return np.asarray([float(len(t)) for t in texts])


def test_scoring_by_length_returns_input_order():
    texts = ["a much longer sentence here", "short", "medium text"]
    scorer = _LengthScorer()
    assert list(score_by_length(scorer, "q", texts)) == [float(len(t)) for t in texts]
    assert scorer.fed == ["short", "medium text", "a much longer sentence here"]


def test_select_evidence_with_a_shortlist_reads_fewer_sentences(quote_scorer):
    question = "Does vitamin D supplementation improve bone mineral density?"
    scorer = _LengthScorer()
    select_evidence(question, BONE, scorer, k=2, max_scored=3)
    assert len(scorer.fed) == 3
    evidence, _ = select_evidence(question, BONE, quote_scorer, k=2, per_paper=1, max_scored=4)
    assert sorted(e.reference for e in evidence) == [0, 1]


def test_yes_no_questions_become_statements():
    assert statement_of("Does vitamin D supplementation improve bone mineral density?") == (
        "Vitamin D supplementation improves bone mineral density.")
    assert statement_of("Is obesity associated with colorectal cancer?") == "Obesity is associated with colorectal cancer."
    assert statement_of("Can exercise prevent falls in the elderly?") == "Exercise can prevent falls in the elderly."
    assert statement_of("Do statins reduce mortality?") == "Statins reduce mortality."
    assert statement_of("Aspirin prevents cancer.") == "Aspirin prevents cancer."


def test_references_numbered_from_one_with_authors_year_venue():
    from openscholar.answer import Answer, Sentence

    refs = [Reference(id=7, paper_id="p7", title="Trial A", text="t", year=2019, venue="Lancet",
                      authors=["A. One", "B. Two", "C. Three", "D. Four"], url="https://x.org/a"),
            Reference(id=2, paper_id="p2", title="Study B.", text="t")]
    answer = Answer(question="q", mode="synthesis", text="First finding [7]. Second finding [2][7].",
                    sentences=[Sentence(text="First finding.", citations=[7], status="supported", supported=True),
                               Sentence(text="Second finding.", citations=[2, 7], status="supported", supported=True)],
                    references=refs, passages=refs)
    md = answer.to_markdown()
    assert md.startswith("First finding [1]. Second finding [2][1].")
    assert "[1] A. One et al. (2019). Trial A. Lancet. <https://x.org/a>" in md and "[2] Study B. Paper p2." in md
    bib = answer.to_bibtex()
    assert "@article{p7," in bib and "journal = {Lancet}" in bib and "author = {A. One and B. Two and C. Three and D. Four}" in bib
    assert answer.model_dump(mode="json")["references"][0]["id"] == 7  # JSON keeps the stable ids


def test_section_titles_name_what_the_quotes_share_else_the_paper():
    asked = content_words("Does vitamin D supplementation improve bone mineral density?")
    quotes = ["Risedronate reduced vertebral fractures by 41% in three years.",
              "Vertebral fractures were fewer with daily calcium and risedronate.",
              "Bone mineral density rose at the hip."]
    # the phrase both quotes share leads; its words are not repeated; the question's words never appear
    assert section_title(quotes, asked) == "Vertebral fractures, risedronate"
    # one quote shares nothing with another: the title is its paper's, shortened
    assert section_title(["Bone mineral densitometry has become more widely available."], asked,
                         "Clinical use of bone densitometry: a scientific review of practice in older women") == \
        "Clinical use of bone densitometry: a scientific review…"
    assert section_title(["Vitamin D improves bone mineral density."], asked) == "Evidence"


def test_select_evidence_titles_sections_from_their_quotes_or_papers(quote_scorer):
    question = "Does vitamin D supplementation improve bone mineral density?"
    evidence, sections = select_evidence(question, BONE, quote_scorer, k=3, per_paper=1)
    for section in sections:
        if len(section.evidence) == 1:
            assert section.title == BONE[evidence[section.evidence[0]].reference].title
        else:
            assert section.title and not (content_words(section.title) & content_words(question))
