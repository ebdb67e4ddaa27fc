"""Is an answer usable at all? An empty or garbled answer is a failure with a reason, not a success.

This is not a judgement of correctness (verification does that per sentence); it only catches output
a reader could not use: nothing but citation markers or whitespace, replacement characters, no words,
or one token repeated over and over (a small model looping).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

_CITATION = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")
_WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)


def answer_problem(answer: dict[str, Any]) -> str | None:
    """Why ``answer`` (the Answer as JSON) cannot be shown as a success, or None when it can."""
    text = str(answer.get("text") or "")
    bare = _CITATION.sub(" ", text).strip()
    if not bare:
        return "the model returned an empty answer" + (" (only citation markers)" if text.strip() else "")
    if bare.count("\ufffd") >= max(3, len(bare) // 50):
        return "the model returned garbled text (undecodable characters)"
    words = _WORD.findall(bare)
    if not words:
        return "the model returned no words, only symbols or numbers"
    visible = [c for c in bare if not c.isspace()]
    letters = sum(c.isalpha() for c in visible)
    if len(visible) >= 20 and letters / len(visible) < 0.5:
        return f"the model returned garbled text ({letters} letters in {len(visible)} characters)"
    if len(words) >= 12:
        word, n = Counter(w.lower() for w in words).most_common(1)[0]
        if n / len(words) > 0.5:
            return f"the model returned a loop: {word!r} is {n} of its {len(words)} words"
    return None
