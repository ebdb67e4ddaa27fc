"""Records that flow through the datastore: papers in, passages out.

`Passage` is the one passage schema. `PassageData` is the same schema as a pydantic model for
JSON and HTTP bodies (the answer's references, the API's hits, caller-supplied passages all derive
from it); `PassageData.of(passage)` and `PassageData.to_passage()` are the one conversion each way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, Field


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


class PassageData(BaseModel):
    """A passage as data: what clients see of a passage and what they may supply."""

    passage_id: int | None = Field(None, description="Datastore passage id (None for caller-supplied passages).")
    paper_id: str | None = Field(None, description="Paper id in the corpus.")
    title: str = Field("", description="Paper title.")
    text: str = Field("", description="The passage text (without its title).")
    year: int | None = Field(None, description="Publication year.")
    venue: str | None = Field(None, description="Journal or conference.")
    authors: list[str] = Field(default_factory=list, description="Author names.")
    url: str | None = Field(None, description="Where to read the paper.")
    citation_count: int | None = Field(None, description="Citations of the paper, if known.")

    @classmethod
    def fields_of(cls, passage: Passage) -> dict[str, Any]:
        """The schema's fields of ``passage`` (to build any model derived from this one)."""
        return {
            "passage_id": passage.passage_id, "paper_id": passage.paper_id, "title": passage.title,
            "text": passage.text, "year": passage.year, "venue": passage.venue, "authors": list(passage.authors),
            "url": passage.url, "citation_count": passage.citation_count,
        }

    @classmethod
    def of(cls, passage: Passage) -> PassageData:
        return cls(**cls.fields_of(passage))

    def to_passage(self, passage_id: int | None = None, paper_id: str | None = None) -> Passage:
        """The `Passage` these fields describe (ids default to this one's, then -1 / "")."""
        pid = passage_id if passage_id is not None else self.passage_id
        return Passage(
            passage_id=-1 if pid is None else pid, paper_id=paper_id or self.paper_id or "", title=self.title,
            text=self.text, year=self.year, venue=self.venue, authors=tuple(self.authors), url=self.url,
            citation_count=self.citation_count,
        )
