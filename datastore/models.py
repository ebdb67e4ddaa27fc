"""Records that flow through the datastore: papers in, passages out."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Paper:
    """One paper as read from a corpus source, before chunking."""

    paper_id: str
    title: str
    text: str
    year: int | None = None
    venue: str | None = None
    authors: tuple[str, ...] = ()
    url: str | None = None
    citation_count: int | None = None
    source: str = ""


@dataclass(frozen=True, slots=True)
class Passage:
    """A chunk of a paper: the unit that is embedded, indexed, retrieved and cited.

    ``passage_id`` is the datastore-wide integer id (row of the vector index); ``text`` is the
    chunk without its title; ``embed_text`` is what the encoder sees.
    """

    passage_id: int
    paper_id: str
    title: str
    text: str
    chunk_index: int = 0
    year: int | None = None
    venue: str | None = None
    authors: tuple[str, ...] = ()
    url: str | None = None
    citation_count: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def embed_text(self) -> str:
        title = self.extra.get("embed_title", self.title)
        return f"{title} {self.text}".strip() if title else self.text

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["authors"] = list(self.authors)
        return d
