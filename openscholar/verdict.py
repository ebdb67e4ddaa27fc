"""The verifier's verdict on a claim or a yes/no question, from the evidence in play.

A yes/no question is first turned into the statement it asks about ("Does X improve Y?" -> "X
improves Y."), then the support judge reads the statement against every passage the quotes come
from (window by window) and against each quote: the best ``supports`` and ``contradicts`` decide
``supported``, ``contradicted`` or ``not enough evidence`` (neither passes ``threshold``). The
quotes that agree with the verdict are the ones that decided it.

With ``windows`` (`evidence.verdict_windows`, 2) a passage is read as its ``windows`` windows
closest to the statement by content words, each judged as a passage of its own (as a quote is),
the best counting. On held-apart SciFact train claims with their gold abstracts (76 claims,
bench/verdict_rule.py) this leaned right more often than the judge reading whole passages (0.80 vs
0.78) and settled fewer claims wrongly (7 vs 12; it says "not enough evidence" more: a window for
and a window against is mixed evidence), reading ~4x fewer pairs than eight windows per passage.
None: each passage whole, as the judge reads it (its own ``judge_windows``).
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


def passage_pieces(statement: str, refs: Sequence[Reference], judge: SupportJudge,
                   windows: int | None) -> list[list[str]]:
    """What the verdict judges of each passage: the passage whole (``windows`` None, or a judge that
    reads no windows), else its ``windows`` windows closest to ``statement``, each as a passage."""
    if windows is None or not hasattr(judge, "windows_of") or not hasattr(judge, "with_windows"):
        return [[passage_text(r)] for r in refs]
    narrow = judge.with_windows(windows)  # type: ignore[attr-defined]
    # The title line is kept (the judge drops it: not evidence), so a window's own line breaks stay in its body.
    return [[f"{r.title}\n{w}" for w in narrow.windows_of(statement, passage_text(r))] for r in refs]


def judge_passages(statement: str, refs: Sequence[Reference], judge: SupportJudge, windows: int | None,
                   extra: Sequence[str] = ()) -> tuple[list[Judgement], list[Judgement]]:
    """One judge call over the passages' pieces and ``extra`` texts: (the best judgement per passage
    over its pieces, the judgements of ``extra``)."""
    pieces = passage_pieces(statement, refs, judge, windows)
    pairs = [(statement, p) for ps in pieces for p in ps] + [(statement, t) for t in extra]
    judged = judge.judge(pairs) if pairs else []
    per_ref, start = [], 0
    for ps in pieces:
        part = judged[start:start + len(ps)]
        start += len(ps)
        per_ref.append(Judgement(supports=max(j.supports for j in part), contradicts=max(j.contradicts for j in part),
                                 neither=min(j.neither for j in part)))
    return per_ref, judged[start:]


def decide(statement: str, evidence: Sequence[Evidence], references: dict[int, Reference], judge: SupportJudge, *,
           threshold: float = 0.5, max_deciding: int = 3, windows: int | None = None) -> Verdict:
    """The verdict on ``statement`` from the quotes and their passages (``windows``: see the module
    doc); fills each quote's ``judgement``."""
    ref_ids = list(dict.fromkeys(e.reference for e in evidence if e.reference in references))
    per_ref, by_quote = judge_passages(statement, [references[r] for r in ref_ids], judge, windows,
                                       [e.quote for e in evidence])
    judged = per_ref + by_quote
    by_ref: dict[int, Judgement] = dict(zip(ref_ids, per_ref, strict=True))
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
                       threshold: float = 0.5, windows: int | None = None) -> Verdict:
    """The verdict on ``statement`` from passages (``windows``: see the module doc), without quotes."""
    judged, _ = judge_passages(statement, references, judge, windows)
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
