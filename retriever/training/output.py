"""Writing a trained artifact: all of it or nothing, its adapter without local paths, and hashes that name its files."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ADAPTER_CONFIG = "adapter_config.json"


@contextmanager
def atomic_dir(out: Path) -> Iterator[Path]:
    """Yield a fresh hidden sibling of ``out`` to write into; on success it replaces ``out``.

    A reader sees the old directory or the new one, never a half-written one: a training killed
    while saving leaves only ``.<name>.partial`` (removed by the next run) and ``out`` untouched.
    On an error the partial directory is removed and ``out`` is left as it was.
    """
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.with_name(f".{out.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)  # two renames: out is absent only between them, never half-written
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_adapter(model: Any, directory: Path, *, base_model: str | None = None) -> None:
    """Save a peft model's adapter into ``directory`` without peft's empty model card; with
    ``base_model``, the adapter config names its base by that id, not by this machine's path."""
    directory = Path(directory)
    model.save_pretrained(str(directory))
    (directory / "README.md").unlink(missing_ok=True)
    if base_model is not None:
        config_file = directory / ADAPTER_CONFIG
        data = json.loads(config_file.read_text(encoding="utf-8"))
        data["base_model_name_or_path"] = base_model
        config_file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
