"""The composition root's factories: settings in, wired components out. Nothing is built at import.

Every entry point (CLI, API, workers, eval) builds components through here, so they are wired the
same way everywhere.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from datastore.datastore import Datastore
from datastore.errors import SourceError
from datastore.sources import scholarqabench_context_files
from openscholar.settings import Settings
from retriever.dense import DenseRetriever
from retriever.st_embedder import SentenceTransformerEmbedder

log = logging.getLogger(__name__)


def build_embedder(settings: Settings) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(settings.embedder)


def open_datastore(settings: Settings, path: str | Path | None = None) -> Datastore:
    """Open (and verify) the datastore at ``path`` or ``datastore.path``."""
    return Datastore.open(
        Path(path).expanduser() if path else settings.datastore_path, config=settings.datastore
    )


def dense_retriever(settings: Settings, datastore: Datastore, embedder: SentenceTransformerEmbedder | None = None) -> DenseRetriever:
    return DenseRetriever(datastore, embedder or build_embedder(settings))


def scifact_dir(settings: Settings) -> Path:
    """The BEIR SciFact directory: the local copy named in settings, else downloaded into the cache."""
    local = settings.corpus.scifact_dir
    if local is not None and (local.expanduser() / "corpus.jsonl").is_file():
        return local.expanduser()
    target = settings.cache_path / "beir" / "scifact"
    if (target / "corpus.jsonl").is_file():
        return target
    url = settings.corpus.scifact_url
    log.info("downloading BEIR SciFact from %s", url)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            archive = Path(tmp) / "scifact.zip"
            with urllib.request.urlopen(url, timeout=60) as resp, archive.open("wb") as fh:
                shutil.copyfileobj(resp, fh)
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
            extracted = next(p.parent for p in Path(tmp).rglob("corpus.jsonl"))
            shutil.move(str(extracted), str(target))
    except (OSError, StopIteration, zipfile.BadZipFile) as exc:
        raise SourceError(
            f"no local SciFact copy and the download from {url} failed ({exc})",
            hint="set corpus.scifact_dir (OPENSCHOLAR_CORPUS__SCIFACT_DIR) to a BEIR SciFact directory",
            retryable=True,
        ) from exc
    return target


def default_sources(settings: Settings) -> list[str]:
    """Source specs of the default datastore: SciFact plus ScholarQABench dev contexts if present."""
    specs = [f"beir:{scifact_dir(settings)}"]
    sqa = settings.corpus.scholarqabench_dir
    if sqa is not None and sqa.expanduser().is_dir():
        specs += [f"scholarqabench:{p}" for p in scholarqabench_context_files(sqa.expanduser())]
    return specs
