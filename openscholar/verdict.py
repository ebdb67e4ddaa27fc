"""The verifier's verdict on a claim or a yes/no question, from the evidence in play.

A yes/no question is first turned into the statement it asks about ("Does X improve Y?" -> "X
improves Y."), then the support judge reads the statement against every passage the quotes come
from (window by window) and against each quote: the best ``supports`` and ``contradicts`` decide
``supported``, ``contradicted`` or ``not enough evidence`` (neither passes ``threshold``). The
quotes that agree with the verdict are the ones that decided it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from openscholar.answer import Evidence, Reference, Verdict, VerdictLabel
from openscholar.citations import passage_text
from openscholar.judges.perturb import _VERBS
from openscholar.judges.protocol import Judgement, SupportJudge

_DO = re.compile(r"^(does|do|did)\s+(.*)$", re.IGNORECASE)
_BE = re.compile(r"^(is|are|was|were|has|have|had)\s+(.*)$", re.IGNORECASE)
_MODAL = re.compile(r"^(can|could|may|might|will|would|should|must)\s+(.*)$", re.IGNORECASE)
_BASE_TO_THIRD = {v: k for k, v in _VERBS.items()}
_PREDICATE = re.compile(r"\b(\w+ed|\w+ive|\w+able|\w+ible|associated|related|linked|effective|safe|useful|better|"
                        r"worse|higher|lower|more|less|necessary|sufficient|superior|inferior|present|different|"
                        r"due|a|an|the)\b", re.IGNORECASE)


_YES_NO = re.compile(r"^(does|do|did|is|are|was|were|can|could|may|might|will|would|should|has|have|had|must)\s.+\?\s*$",
                     re.IGNORECASE | re.DOTALL)


def is_yes_no(question: str) -> bool:
    """A question answered by yes or no ("Does X improve Y?"), so a verdict answers it."""
    return bool(_YES_NO.match(question.strip()))


def statement_of(question: str) -> str:
    """The declarative statement a yes/no question asks about; other text is returned as it is."""
    q = " ".join(question.strip().split()).rstrip("?").strip()
    m = _DO.match(q)
    if m is not None:
        aux, rest = m.group(1).lower(), m.group(2)
        words = rest.split()
        for i, w in enumerate(words[1:], start=1):
            low = w.lower()
            if low in _BASE_TO_THIRD:
                verb = _BASE_TO_THIRD[low] if aux == "does" else (low if aux == "do" else _past(low))
                return _sentence(" ".join([*words[:i], verb, *words[i + 1:]]))
        return _sentence(rest)
    m = _MODAL.match(q)
    if m is not None:
        aux, rest = m.group(1).lower(), m.group(2)
        words = rest.split()
        for i, w in enumerate(words[1:], start=1):
            if w.lower() in _BASE_TO_THIRD or w.lower() in ("be", "have", "replace", "sustain", "reduce", "help"):
                return _sentence(" ".join([*words[:i], aux, *words[i:]]))
        return _sentence(rest)
    m = _BE.match(q)
    if m is not None:
        aux, rest = m.group(1).lower(), m.group(2)
        words = rest.split()
        for i, w in enumerate(words[1:], start=1):
            if _PREDICATE.fullmatch(w):
                return _sentence(" ".join([*words[:i], aux, *words[i:]]))
        return _sentence(f"{rest} {aux}" if len(words) < 3 else rest)
    return _sentence(q)


def _past(verb: str) -> str:
    return verb + "d" if verb.endswith("e") else verb + "ed"


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "." if text else text


def decide(statement: str, evidence: Sequence[Evidence], references: dict[int, Reference], judge: SupportJudge, *,
           threshold: float = 0.5, max_deciding: int = 3) -> Verdict:
    """The verdict on ``statement`` from the quotes and their passages; fills each quote's ``judgement``."""
    ref_ids = list(dict.fromkeys(e.reference for e in evidence if e.reference in references))
    pairs = [(statement, passage_text(references[r])) for r in ref_ids] + [(statement, e.quote) for e in evidence]
    judged = judge.judge(pairs) if pairs else []
    by_ref: dict[int, Judgement] = dict(zip(ref_ids, judged[:len(ref_ids)], strict=True))
    by_quote = judged[len(ref_ids):]
    for e, j in zip(evidence, by_quote, strict=True):
        e.judgement = j.to_dict()
    s = max((j.supports for j in judged), default=0.0)
    c = max((j.contradicts for j in judged), default=0.0)
    label = _label(s, c, threshold)
    key = "supports" if label == "supported" else "contradicts" if label == "contradicted" else None
    deciding: list[int] = []
    if key is not None:
        def strength(i: int) -> float:
            own = getattr(by_quote[i], key)
            ref = by_ref.get(evidence[i].reference)
            return max(own, getattr(ref, key) if ref is not None else 0.0)
        ranked = sorted(range(len(evidence)), key=lambda i: -strength(i))
        deciding = [i for i in ranked if strength(i) >= threshold][:max_deciding]
    return Verdict(label=label, statement=statement, supports=round(s, 4), contradicts=round(c, 4), deciding=deciding)


def decide_on_passages(statement: str, references: Sequence[Reference], judge: SupportJudge, *,
                       threshold: float = 0.5) -> Verdict:
    """The verdict on ``statement`` from whole passages (window by window), without quotes."""
    judged = judge.judge([(statement, passage_text(r)) for r in references]) if references else []
    s = max((j.supports for j in judged), default=0.0)
    c = max((j.contradicts for j in judged), default=0.0)
    return Verdict(label=_label(s, c, threshold), statement=statement, supports=round(s, 4), contradicts=round(c, 4))


def _label(s: float, c: float, threshold: float) -> VerdictLabel:
    """Supported or contradicted when exactly one side passes ``threshold``; both (mixed evidence)
    or neither: not enough evidence."""
    if s >= threshold and c < threshold:
        return "supported"
    if c >= threshold and s < threshold:
        return "contradicted"
    return "not enough evidence"


def short_answer(task: str, verdict: Verdict) -> str:
    """The first words of a claim / yes-no answer for a verdict: True/False, Yes/No, or an explicit
    "Not enough evidence", with the side the evidence leans to."""
    yes, no = ("True", "False") if task == "claim" else ("Yes", "No")
    if verdict.label == "supported":
        return yes
    if verdict.label == "contradicted":
        return no
    lean = yes if verdict.supports >= verdict.contradicts else no
    return f"Not enough evidence (the quotes lean to {lean.lower()})"
