"""File integrity of a datastore: cheap checks on open, a resumable full scrub on demand.

On open every file the manifest names is ``stat``-ed: a file whose size and mtime equal its stamp
is trusted (reading 400 GB per open is not an option); any other file is re-hashed in full and
refused if its sha256 differs (a matching hash is served as is, nothing is rewritten). `scrub`
re-hashes everything, for bit rot that leaves stamps alone, and keeps a small state file so that
an interrupted scrub resumes where it stopped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tqdm.auto import tqdm

from datastore.errors import DatastoreCorrupted
from datastore.manifest import FileStamp, Manifest, atomic_write_text, sha256_file

VERIFY_STATE = ".verify-state.json"
VerifyMode = Literal["fast", "full", "stat"]


def fix_hint(root: Path, rel: str) -> str:
    """What to do about a damaged file ``rel`` of ``root``."""
    if rel.startswith("parts/"):
        part = rel.split("/")[1]
        return (
            f"restore {root / rel} from a backup, or rebuild: delete {root / 'parts' / part} and rerun the same "
            f"`openscholar datastore build ... --out {root}` (other parts are reused), then it is re-finalized"
        )
    return (
        f"restore {root / rel} from a backup, or rebuild the derived files: "
        f"`openscholar datastore build ... --out {root}` after deleting {root / 'manifest.json'} "
        "(parts are reused; deletions must be replayed)"
    )


def check_file(root: Path, rel: str, expected: FileStamp, mode: VerifyMode = "fast") -> bool:
    """Raise DatastoreCorrupted if ``rel`` is missing or differs from ``expected``; True if it was hashed.

    ``stat``: size and mtime only (a changed stamp is an error, without hashing). ``fast``: files
    whose stamp changed are re-hashed. ``full``: every file is re-hashed.
    """
    path = root / rel
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DatastoreCorrupted(f"{rel} of {root} is missing", hint=fix_hint(root, rel)) from None
    if st.st_size != expected.bytes:
        raise DatastoreCorrupted(
            f"{rel} of {root} is {st.st_size} bytes, the manifest says {expected.bytes} (truncated or replaced)",
            hint=fix_hint(root, rel),
        )
    if mode != "full" and st.st_mtime_ns == expected.mtime_ns:
        return False
    if mode == "stat":
        raise DatastoreCorrupted(
            f"{rel} of {root} was modified after the datastore was written (mtime changed)",
            hint="run `openscholar datastore verify` to check its contents; " + fix_hint(root, rel),
        )
    if sha256_file(path) != expected.sha256:
        raise DatastoreCorrupted(
            f"{rel} of {root} does not match its checksum (modified after it was written)",
            hint=fix_hint(root, rel),
        )
    return True


def check_files(root: Path, manifest: Manifest, mode: VerifyMode = "fast") -> list[str]:
    """Check every stamped file of ``manifest``; returns the files that had to be re-hashed."""
    return [rel for rel, st in manifest.all_files().items() if check_file(root, rel, st, mode)]


@dataclass
class ScrubReport:
    checked: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)
    bytes_hashed: int = 0


def scrub(
    root: Path, manifest: Manifest, *, progress: bool = True, restart: bool = False,
    on_file: Callable[[str], None] | None = None,
) -> ScrubReport:
    """Re-hash every file against the manifest; resumable through ``root/.verify-state.json``.

    The state file lists files already verified against this manifest (by its checksum); a new
    manifest or ``restart`` starts over. It is removed when the scrub completes.
    """
    state_path = root / VERIFY_STATE
    done: dict[str, str] = {}
    if not restart and state_path.is_file():
        try:
            state = json.loads(state_path.read_text())
            if state.get("manifest") == manifest.checksum:
                done = dict(state.get("verified", {}))
        except (OSError, ValueError):
            done = {}
    files = manifest.all_files()
    report = ScrubReport()
    todo = {rel: st for rel, st in files.items() if done.get(rel) != st.sha256}
    report.skipped = [rel for rel in files if rel not in todo]
    with tqdm(total=sum(st.bytes for st in todo.values()), unit="B", unit_scale=True, desc="verify",
              disable=not progress) as bar:
        for rel, st in todo.items():
            if on_file is not None:
                on_file(rel)
            try:
                path = root / rel
                size = path.stat().st_size
                if size != st.bytes:
                    raise DatastoreCorrupted(f"{rel} is {size} bytes, the manifest says {st.bytes}", hint=fix_hint(root, rel))
                digest = sha256_file(path, bar.update)
                report.bytes_hashed += size
                if digest != st.sha256:
                    raise DatastoreCorrupted(f"{rel} does not match its checksum", hint=fix_hint(root, rel))
            except FileNotFoundError:
                report.bad.append((rel, f"{rel} is missing; {fix_hint(root, rel)}"))
                continue
            except DatastoreCorrupted as exc:
                report.bad.append((rel, str(exc)))
                continue
            report.checked.append(rel)
            done[rel] = st.sha256
            atomic_write_text(state_path, json.dumps({"manifest": manifest.checksum, "verified": done}))
    if not report.bad and state_path.exists():
        os.unlink(state_path)
    return report
