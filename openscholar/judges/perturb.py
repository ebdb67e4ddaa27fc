"""Synthetic hard negatives: a supported statement changed so that its evidence no longer supports it.

Four rules, each returning None when it does not apply to the sentence:

- `negate`: the predicate negated ("X reduces Y" -> "X does not reduce Y"; "is" -> "is not"), or an
  existing negation removed ("does not reduce" -> "reduces");
- `reverse`: the direction flipped (increase <-> decrease, higher <-> lower, promotes <-> inhibits);
- `change_number`: a quantity changed (24% -> 48%, 36 hours -> 72 hours);
- `swap_entity`: a named entity (acronym, gene or drug-like token) replaced by one from another
  statement.

Negated, reversed and changed-number statements are contradicted by the evidence of the original;
a swapped entity makes a statement the evidence does not speak to (neither). Word-overlap judges
score all four as high as the original: that is what makes them hard.
"""

from __future__ import annotations

import random
import re

_AUX = re.compile(
    r"\b(is|are|was|were|can|could|may|might|will|would|should|must|does|do|did|has|have|had)\b(?! not\b)(?!n't)"
)
_NEGATED = re.compile(r"\b(is|are|was|were|can|could|may|might|will|would|should|must|has|have|had) not\b")
_DO_NOT = re.compile(r"\b(does|do|did) not (\w+)")
# Verbs common in scientific claims, third person singular -> base form.
_VERBS = {
    "increases": "increase", "decreases": "decrease", "reduces": "reduce", "improves": "improve",
    "causes": "cause", "induces": "induce", "inhibits": "inhibit", "promotes": "promote", "prevents": "prevent",
    "enhances": "enhance", "impairs": "impair", "lowers": "lower", "raises": "raise", "affects": "affect",
    "activates": "activate", "suppresses": "suppress", "regulates": "regulate", "requires": "require",
    "predicts": "predict", "protects": "protect", "mediates": "mediate", "correlates": "correlate",
    "contributes": "contribute", "leads": "lead", "results": "result", "blocks": "block", "binds": "bind",
    "limits": "limit", "triggers": "trigger", "drives": "drive", "elevates": "elevate", "alters": "alter",
    "modulates": "modulate", "influences": "influence", "upregulates": "upregulate",
    "downregulates": "downregulate", "attenuates": "attenuate", "worsens": "worsen", "shows": "show",
    "exhibits": "exhibit", "produces": "produce", "facilitates": "facilitate", "stimulates": "stimulate",
    "restores": "restore", "accelerates": "accelerate", "delays": "delay", "benefits": "benefit",
    "outperforms": "outperform", "achieves": "achieve", "depends": "depend", "associates": "associate",
    "lacks": "lack", "enables": "enable", "occurs": "occur", "consists": "consist", "contains": "contain",
    "expresses": "express", "acts": "act", "interacts": "interact", "remains": "remain", "differs": "differ",
}
_PLURAL_VERBS = {v: v for v in _VERBS.values()}
_PAST_BASE = {
    "led": "lead", "showed": "show", "induced": "induce", "reduced": "reduce",
    "produced": "produce", "improved": "improve", "increased": "increase",
    "decreased": "decrease", "promoted": "promote", "activated": "activate",
    "elevated": "elevate", "altered": "alter", "delayed": "delay", "restored": "restore",
    "accelerated": "accelerate", "attenuated": "attenuate", "stimulated": "stimulate",
    "raised": "raise", "achieved": "achieve", "enhanced": "enhance", "suppressed": "suppress",
    "worsened": "worsen", "blocked": "block", "triggered": "trigger", "lowered": "lower",
    "affected": "affect", "impaired": "impair", "inhibited": "inhibit", "prevented": "prevent",
    "outperformed": "outperform", "resulted": "result", "caused": "cause"}
_PAST = frozenset(_PAST_BASE)

_ANTONYMS = [
    ("increases", "decreases"), ("increase", "decrease"), ("increased", "decreased"), ("increasing", "decreasing"),
    ("higher", "lower"), ("more", "less"), ("greater", "smaller"), ("raises", "lowers"), ("raised", "lowered"),
    ("promotes", "inhibits"), ("promote", "inhibit"), ("promoted", "inhibited"), ("enhances", "impairs"),
    ("enhance", "impair"), ("enhanced", "impaired"), ("improves", "worsens"), ("improve", "worsen"),
    ("improved", "worsened"), ("upregulates", "downregulates"), ("upregulated", "downregulated"),
    ("up-regulates", "down-regulates"), ("up-regulated", "down-regulated"), ("positively", "negatively"),
    ("positive", "negative"), ("activates", "suppresses"), ("activated", "suppressed"), ("gain", "loss"),
    ("elevated", "reduced"), ("accelerates", "delays"), ("accelerated", "delayed"), ("benefit", "harm"),
    ("beneficial", "harmful"), ("protective", "detrimental"), ("facilitates", "prevents"),
    ("stimulates", "suppresses"), ("above", "below"), ("longer", "shorter"), ("larger", "smaller"),
    ("faster", "slower"), ("risk factor", "protective factor"), ("reduces", "increases"), ("reduce", "increase"),
    ("reduced", "increased"), ("lower", "higher"), ("less", "more"), ("decrease", "increase"),
]
_SWAP = {a: b for a, b in _ANTONYMS} | {b: a for a, b in _ANTONYMS}
_SWAP_RE = re.compile(r"(?<![-\w])(" + "|".join(sorted(map(re.escape, _SWAP), key=len, reverse=True)) + r")(?![-\w])", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.-])(\d+(?:\.\d+)?)(\s?%|\s?(?:-fold|fold|mg|g|kg|ml|mm|cm|hours?|days?|weeks?|months?|years?|"
                     r"patients|participants|subjects|mice|times)\b)")
_ENTITY = re.compile(r"\b(?=[A-Za-z0-9-]*[A-Z][A-Za-z0-9-]*[A-Z0-9])(?![A-Z][a-z]+\b)[A-Za-z][A-Za-z0-9-]{1,14}\b")


def _match_case(word: str, like: str) -> str:
    return word.capitalize() if like[:1].isupper() else word


def negate(sentence: str) -> str | None:
    """The sentence with its first predicate negated, or its first negation removed."""
    m = _DO_NOT.search(sentence)
    if m is not None:
        verb = m.group(2)
        third = m.group(1) == "does"
        inflected = next((k for k, v in _VERBS.items() if v == verb), verb + "s") if third else verb
        if m.group(1) == "did":
            inflected = next((k for k, v in _PAST_BASE.items() if v == verb), verb + "ed")
        return sentence[:m.start()] + inflected + sentence[m.end():]
    m = _NEGATED.search(sentence)
    if m is not None:
        return sentence[:m.start()] + m.group(1) + sentence[m.end():]
    if re.search(r"\bno\b", sentence, re.IGNORECASE):
        return None  # "no association" style negations are not undone safely
    words = list(re.finditer(r"[A-Za-z-]+", sentence))
    for w in words:
        low = w.group(0).lower()
        before = sentence[:w.start()].rstrip().lower()
        if before.endswith((" to", "-")) or sentence[w.end():w.end() + 1] == "-":
            continue
        if low in _VERBS and w.start() > 0:
            return sentence[:w.start()] + "does not " + _VERBS[low] + sentence[w.end():]
        passive = before.endswith((" be", " been", " is", " are", " was", " were", " have", " has", " had")) or \
            sentence[w.end():].lstrip().startswith("by ")
        if low in _PAST and w.start() > 0 and not passive and before.split()[-1:] != [] and \
                not before.split()[-1].endswith("s"):
            return sentence[:w.start()] + "did not " + _PAST_BASE[low] + sentence[w.end():]
    m = _AUX.search(sentence)
    if m is not None and m.start() > 0:
        return sentence[:m.end()] + " not" + sentence[m.end():]
    for w in words[1:]:
        low = w.group(0).lower()
        if low in _PLURAL_VERBS:
            return sentence[:w.start()] + "do not " + low + sentence[w.end():]
    return None


def reverse(sentence: str) -> str | None:
    """The sentence with its first direction word replaced by its opposite."""
    m = _SWAP_RE.search(sentence)
    if m is None:
        return None
    word = m.group(1)
    return sentence[:m.start()] + _match_case(_SWAP[word.lower()], word) + sentence[m.end():]


def change_number(sentence: str, rng: random.Random) -> str | None:
    """The sentence with one quantity replaced by a clearly different one."""
    found = list(_NUMBER.finditer(sentence))
    if not found:
        return None
    m = rng.choice(found)
    value = float(m.group(1))
    factor = rng.choice([0.25, 0.5, 2.0, 3.0])
    new = value * factor
    if "%" in m.group(2):
        new = min(new, 99.0) if new != value else value + 30
        if abs(new - value) < 5:
            new = value + 25 if value < 70 else value - 25
    text = f"{new:.0f}" if "." not in m.group(1) else f"{new:.1f}"
    if text == m.group(1):
        return None
    return sentence[:m.start(1)] + text + sentence[m.end(1):]


def entities(sentence: str) -> list[str]:
    """Acronym-, gene- or drug-like tokens (mixed case or digits: IL-6, TNF, BRCA1, mTORC1)."""
    return [m.group(0) for m in _ENTITY.finditer(sentence)]


def swap_entity(sentence: str, pool: list[str], rng: random.Random) -> str | None:
    """The sentence with one entity replaced by a different one drawn from ``pool``."""
    own = entities(sentence)
    choices = [e for e in pool if e not in own]
    if not own or not choices:
        return None
    target = rng.choice(own)
    return re.sub(rf"\b{re.escape(target)}\b", rng.choice(choices), sentence, count=1)
