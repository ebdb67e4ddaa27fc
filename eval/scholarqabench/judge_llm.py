"""Talking to a judge LLM over the ``LLM`` protocol: one call, its text, and JSON or a score from it."""

from __future__ import annotations

import json
import re
from typing import Any


def ask(llm: Any, system: str, user: str, max_tokens: int) -> str:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    return llm.complete(messages, max_tokens=max_tokens, temperature=0.0).text


def extract_json(text: str) -> Any:
    """The first JSON object in ``text`` (models wrap it in prose or code fences); None if none."""
    start = text.find("{")
    while start != -1:
        depth = 0
        for end in range(start, len(text)):
            if text[end] == "{":
                depth += 1
            elif text[end] == "}":
                depth -= 1
                if depth == 0:
                    try:
                        return json.loads(text[start : end + 1])
                    except json.JSONDecodeError:
                        break
        start = text.find("{", start + 1)
    return None


_RESULT = re.compile(r"\[RESULT\]\s*\(?\s*([1-5])")


def extract_result(text: str) -> int | None:
    """Prometheus' ``[RESULT] n`` (1-5); None when the judge did not follow the format."""
    m = _RESULT.search(text)
    return int(m.group(1)) if m else None
