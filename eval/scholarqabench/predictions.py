"""Prediction files in the benchmark's format: one JSON object per line (or a JSON list) with
``input``, ``output`` (0-based ``[n]`` citations into ``ctxs``) and ``ctxs`` (``{title, text}``).

Reading validates every record and says which line is wrong and how; writing appends one line per
answered question and flushes, so an interrupted run loses nothing and ``--resume`` can skip what is
done.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from datastore.errors import ErrorKind, ScholarError


class PredictionsError(ScholarError):
    """A predictions file cannot be read or is not in the benchmark's format."""

    kind: ErrorKind = "invalid_input"


_FORMAT_HINT = ('each line must be a JSON object like {"input": "...", "output": "... [0]", '
                '"ctxs": [{"title": "...", "text": "..."}]}')


def validate_record(record: Any, where: str) -> dict[str, Any]:
    """The record if it is a valid prediction, else a PredictionsError naming ``where``."""
    if not isinstance(record, dict):
        raise PredictionsError(f"{where}: expected a JSON object, got {type(record).__name__}", hint=_FORMAT_HINT)
    for key in ("input", "output"):
        if key not in record:
            raise PredictionsError(f"{where}: missing {key!r}", hint=_FORMAT_HINT)
        if not isinstance(record[key], str):
            raise PredictionsError(f"{where}: {key!r} must be a string, got {type(record[key]).__name__}",
                                   hint=_FORMAT_HINT)
    ctxs = record.get("ctxs", record.get("docs"))
    if ctxs is None:
        raise PredictionsError(f"{where}: missing 'ctxs' (the passages [n] refers to)", hint=_FORMAT_HINT)
    if isinstance(ctxs, dict):  # the benchmark also accepts {id: [text, title]}
        ctxs = [{"text": v[0], "title": v[1]} for v in ctxs.values()]
    if not isinstance(ctxs, list) or not all(isinstance(c, dict) and isinstance(c.get("text"), str) for c in ctxs):
        raise PredictionsError(f"{where}: 'ctxs' must be a list of objects with a 'text' string", hint=_FORMAT_HINT)
    record["ctxs"] = ctxs
    return record


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Every prediction in ``path`` (JSONL, a JSON list, or {"data": [...]}), validated."""
    path = Path(path)
    if not path.is_file():
        raise PredictionsError(f"predictions file {path} does not exist",
                               hint="run `openscholar eval scholarqabench --output FILE` first or fix the path")
    text = path.read_text(encoding="utf-8")
    records: list[tuple[str, Any]] = []
    stripped = text.lstrip()
    whole: Any = None
    if stripped.startswith(("[", "{")):
        try:  # a JSON list or {"data": [...]} (the benchmark accepts both), or one JSONL line
            whole = json.loads(text)
        except json.JSONDecodeError as exc:
            if stripped.startswith("["):
                raise PredictionsError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})",
                                       hint=_FORMAT_HINT) from None
    if isinstance(whole, dict) and isinstance(whole.get("data"), list) and "input" not in whole:
        whole = whole["data"]
    if isinstance(whole, list):
        records = [(f"{path} item {i}", r) for i, r in enumerate(whole)]
    else:
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PredictionsError(f"{path} line {lineno} is not valid JSON ({exc.msg})",
                                       hint=_FORMAT_HINT) from None
            records.append((f"{path} line {lineno}", obj))
    if not records:
        raise PredictionsError(f"{path} holds no predictions", hint="answer some questions first")
    return [validate_record(r, where) for where, r in records]


def prediction_key(example_id: str | None, text: str) -> str:
    """What --resume matches on: the example id where there is one (SciFact's test file repeats a
    claim with different evidence: 208 examples, 187 distinct inputs), else the input text."""
    return f"id:{example_id}" if example_id not in (None, "") else f"input:{text}"


def done_inputs(path: str | Path) -> set[str]:
    """Keys (`prediction_key`) of the examples already answered in ``path`` (for --resume); a
    cut-off last line is ignored."""
    path = Path(path)
    if not path.is_file():
        return set()
    done = set()
    lines = path.read_text(encoding="utf-8").splitlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            if lineno == len(lines):  # the run was killed mid-write: that question is redone
                continue
            raise PredictionsError(f"{path} line {lineno} is not valid JSON",
                                   hint="fix or remove that line, then resume") from None
        if isinstance(obj, dict) and isinstance(obj.get("input"), str):
            done.add(prediction_key(obj.get("id"), obj["input"]))
    return done


def truncate_partial_line(path: Path) -> None:
    """Drop an unterminated last line left by a killed run, so appends start on a fresh line."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def append_predictions(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        fh.flush()
