"""Papers -> passages: ~N words, title-prefixed, last chunk kept, never over the token budget.

The reference chunks by 256 whitespace words and lets the encoder truncate at its window; with a
WordPiece encoder 256 words are ~330+ tokens, so about 30% of each passage was never embedded.
Here every chunk is cut so that ``title + text`` fits the encoder's budget exactly: the chunk ends
at whichever comes first, ``words`` words or the token budget.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from datastore.config import ChunkingConfig
from datastore.models import Paper, Passage

TokenCounter = Callable[[Sequence[str]], list[int]]


class Chunker:
    """Splits papers into passages that fit ``max_tokens`` of the encoder (``count_tokens``)."""

    def __init__(self, config: ChunkingConfig, count_tokens: TokenCounter, max_tokens: int) -> None:
        if max_tokens < 8:
            raise ValueError("max_tokens must be at least 8")
        self.config = config
        self.count_tokens = count_tokens
        self.max_tokens = max_tokens

    def _title_for_budget(self, title: str) -> tuple[str, int]:
        """The title prefix and its token cost; a title over half the budget is shortened."""
        if not (self.config.title_prefix and title):
            return "", 0
        words = title.split()
        cost = self.count_tokens([title])[0]
        while words and cost > self.max_tokens // 2:
            words = words[: max(1, len(words) * 3 // 4)] if len(words) > 1 else []
            cost = self.count_tokens([" ".join(words)])[0] if words else 0
        return " ".join(words), cost

    def split(self, paper: Paper) -> list[str]:
        """Chunk texts (without title) of ``paper``; every ``title + ' ' + chunk`` fits the budget."""
        words = paper.text.split()
        if not words:
            return []
        title, title_cost = self._title_for_budget(paper.title)
        budget = self.max_tokens - title_cost - (1 if title else 0)
        # Per-word token costs in one batched call. WordPiece pre-tokenizes on whitespace, so the sum
        # is exact for BERT-style encoders; each chunk is re-checked below for other tokenizers.
        costs = self.count_tokens(words)
        chunks: list[str] = []
        start = 0
        n = len(words)
        while start < n:
            end = start
            used = 0
            while end < n and end - start < self.config.words and used + costs[end] <= budget:
                used += costs[end]
                end += 1
            if end == start:  # one word alone over budget: keep it, the encoder truncates only it
                end = start + 1
            while end - start > 1 and self._cost(title, words[start:end]) > self.max_tokens:
                end -= 1
            chunks.append(" ".join(words[start:end]))
            start = end
        if len(chunks) > 1 and len(chunks[-1].split()) < self.config.min_last_words:
            chunks.pop()
        return chunks

    def _cost(self, title: str, chunk_words: list[str]) -> int:
        text = " ".join(chunk_words)
        return self.count_tokens([f"{title} {text}" if title else text])[0]

    def passages(self, paper: Paper) -> Iterator[Passage]:
        """Passages of ``paper`` with ``passage_id=-1`` (assigned when stored)."""
        title, _ = self._title_for_budget(paper.title)
        for i, chunk in enumerate(self.split(paper)):
            yield Passage(
                passage_id=-1,
                paper_id=paper.paper_id,
                title=paper.title,
                text=chunk,
                chunk_index=i,
                year=paper.year,
                venue=paper.venue,
                authors=paper.authors,
                url=paper.url,
                citation_count=paper.citation_count,
                extra={"embed_title": title} if title != paper.title else {},
            )
