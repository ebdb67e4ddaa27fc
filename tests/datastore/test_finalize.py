"""finalize on synthetic parts (no encoder): deterministic, rerunnable after a failure, bounded choices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datastore.config import DatastoreConfig, IVFPQConfig
from datastore.datastore import Datastore
from datastore.errors import DatastoreError, DatastoreIncomplete
from datastore.finalize import finalize
from datastore.manifest import EncoderInfo, read_manifest
from datastore.models import Passage
from datastore.parts import PartWriter, part_name

DIM = 16
ENC = EncoderInfo(id="synthetic", dim=DIM, max_tokens=64)


def write_parts(root: Path, sizes: list[int], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    first = 0
    for i, n in enumerate(sizes):
        # every 10th passage repeats the text of passage (gid // 2): duplicates across parts
        texts = [f"text {g // 2 if g % 10 == 9 else g}" for g in range(first, first + n)]
        x = rng.normal(size=(n, DIM)).astype(np.float32)
        with PartWriter(root, part_name(i), DIM) as w:
            w.write([Passage(-1, f"paper-{g}", "", t) for g, t in zip(range(first, first + n), texts, strict=True)], x)
            w.close()
        first += n


def stamps(root: Path) -> dict[str, str]:
    return {rel: st.sha256 for rel, st in read_manifest(root).all_files().items()}


@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
def test_the_same_parts_give_the_same_datastore(kind: str, tmp_path: Path) -> None:
    cfg = DatastoreConfig(index=kind, ivfpq=IVFPQConfig(nlist=8, m=4, nbits=4, nprobe=8, rescore=50))
    for name in ("a", "b"):
        write_parts(tmp_path / name, [300, 250, 200])
        finalize(tmp_path / name, ENC, cfg, progress=False)
    a, b = read_manifest(tmp_path / "a"), read_manifest(tmp_path / "b")
    assert (a.passages, a.duplicates, a.live) == (b.passages, b.duplicates, b.live) == (750, a.duplicates, 750 - a.duplicates)
    assert a.duplicates > 0 and a.index is not None and a.index.kind == kind
    # FAISS writes the absolute path of an on-disk segment's data into its header (seg-*.faiss): those
    # headers differ between directories; every other file, the segments' codes included, is identical
    same = {r: h for r, h in stamps(tmp_path / "a").items() if not (r.startswith("index/seg-") and r.endswith(".faiss"))}
    assert len(same) >= 8 and {r: stamps(tmp_path / "b")[r] for r in same} == same


def test_finalize_fails_cleanly_and_reruns(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_parts(root, [120, 80, 100])
    vec = root / "parts" / part_name(1) / "vectors.f16.npy"
    good = vec.read_bytes()
    vec.write_bytes(b"garbage" + good[7:])
    with pytest.raises(ValueError):
        finalize(root, ENC, DatastoreConfig(), progress=False)
    with pytest.raises(DatastoreIncomplete):
        Datastore.open(root)
    vec.write_bytes(good)
    manifest = finalize(root, ENC, DatastoreConfig(), progress=False)
    assert manifest.complete and manifest.passages == 300 and [p.start for p in manifest.parts] == [0, 120, 200]
    ds = Datastore.open(root, verify="full")
    _, ids = ds.search(ds.vectors([130]), 1)
    assert ids[0][0] == 130
    assert finalize(root, ENC, DatastoreConfig(), progress=False).checksum == manifest.checksum, "unchanged parts: as is"
    with PartWriter(root, part_name(3), DIM) as w:
        w.write([Passage(-1, "late", "", "late text")], np.ones((1, DIM), np.float32))
        w.close()
    with pytest.raises(DatastoreError, match="add_parts"):
        finalize(root, ENC, DatastoreConfig(), progress=False)


def test_auto_never_picks_an_index_beyond_the_ram_budget(tmp_path: Path) -> None:
    write_parts(tmp_path / "small", [400])
    roomy = finalize(tmp_path / "small", ENC, DatastoreConfig(), progress=False)
    assert roomy.index is not None and roomy.index.kind == "flat"
    write_parts(tmp_path / "tight", [400])
    cfg = DatastoreConfig(max_index_ram_gb=400 * DIM * 4 / 2 / 2**30, ivfpq=IVFPQConfig(nlist=4, m=4, nbits=4))
    tight = finalize(tmp_path / "tight", ENC, cfg, progress=False)
    assert tight.index is not None and tight.index.kind == "ivfpq"
    assert len(Datastore.open(tmp_path / "tight", config=cfg)) == tight.live
