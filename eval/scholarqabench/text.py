"""Text handling shared by the ScholarQABench scorers, as the benchmark's scripts define it.

The benchmark (ScholarQABench ``citation_correctness_eval.py``, itself adapted from ALCE's
``eval.py``) splits outputs with NLTK's English Punkt model, finds citations with the regex
``\\[\\d+`` (so ``[1, 2]`` counts as ``[1]`` only, as there) and strips them before any
string matching.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

# The benchmark's citation finder: the digits right after "[" (0-based ids into ctxs).
CITATION = re.compile(r"\[(\d+)")

# Abbreviations a scientific text is full of; used only when NLTK's trained English Punkt
# parameters (the `punkt_tab` data package) are not installed, so that "et al." or "e.g."
# does not end a sentence. The report names which splitter ran.
_ABBREVIATIONS = [
    "al", "e.g", "i.e", "etc", "fig", "figs", "eq", "eqs", "vs", "cf", "approx", "ca", "no", "nos",
    "vol", "dr", "mr", "mrs", "ms", "prof", "st", "jr", "sr", "inc", "ltd", "co", "corp", "dept",
    "univ", "resp", "ref", "refs", "sec", "sect", "suppl", "tab", "u.s", "u.k", "ph.d", "m.d",
    "b.sc", "m.sc",
]


def remove_citations(text: str) -> str:
    """The text without citation markers (ALCE's ``remove_citations``: drops ``[n``, ``]`` and `` |``)."""
    return re.sub(r"\[\d+", "", re.sub(r" \[\d+", "", text)).replace(" |", "").replace("]", "")


def find_citations(text: str) -> list[int]:
    """Citation ids in order of appearance, repeats kept (the benchmark keeps them)."""
    return [int(m) for m in CITATION.findall(text)]


@lru_cache(maxsize=1)
def _punkt() -> tuple[Any, str]:
    try:
        import nltk
    except ImportError as exc:  # pragma: no cover - nltk is a core dependency
        raise ImportError("nltk is needed to split sentences: pip install nltk") from exc
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        from nltk.tokenize import PunktTokenizer

        return PunktTokenizer("english"), "nltk-punkt-english"
    except LookupError:
        from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

        params = PunktParameters()
        params.abbrev_types = set(_ABBREVIATIONS)
        return PunktSentenceTokenizer(params), "nltk-punkt-untrained+abbreviations"


def sentence_splitter_name() -> str:
    """Which sentence splitter ``split_sentences`` uses here (reports name it)."""
    return _punkt()[1]


def split_sentences(text: str) -> list[str]:
    """NLTK Punkt sentences, as ``nltk.sent_tokenize`` gives them."""
    tokenizer, _ = _punkt()
    return [s for s in tokenizer.tokenize(text) if s.strip()]


def format_document(doc: dict[str, Any]) -> str:
    """A passage as the benchmark shows it to the attribution judge."""
    if "sent" in doc:
        return "Title: {}\n{}".format(doc.get("title", ""), doc["sent"])
    if "title" in doc:
        return "Title: {}\n{}".format(doc["title"], doc.get("text", ""))
    return str(doc.get("text", ""))
