"""Fast JSON for the importer's hot loops: orjson where installed, else the standard library."""

from __future__ import annotations

import json
from typing import Any

try:  # orjson parses a release line ~3x faster; it is optional
    import orjson

    JSONDecodeError: type[Exception] = orjson.JSONDecodeError

    def loads(data: bytes | str) -> Any:
        return orjson.loads(data)

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

except ImportError:  # pragma: no cover - depends on the environment
    JSONDecodeError = json.JSONDecodeError

    def loads(data: bytes | str) -> Any:
        return json.loads(data)

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()
