"""Write a synthetic release in the exact layout of OpenScholar-DataStore-V3, plus its peS2o file.

    nice -n 15 .venv/bin/python bench/synthetic_release.py OUT --n 1000000 [--shards 16] [--npy]

What is written (as the reference's code writes it, retriever/src/data.py and src/embed.py):

- ``OUT/passages/raw_passages-{s}-of-{n}.jsonl``: ``json.dump({"text", "id", "shard_id",
  "num_shards"})`` per line, ids 0-based per shard, papers cut into 256-word chunks
  (``' '.join(words[i:i+256])``, last chunk kept); papers go to shards in order, as the reference
  splits its input by byte ranges.
- ``OUT/embeddings/passages_{s:02d}.pkl``: ``pickle.dump((ids, array))`` at the default protocol
  (4), ids a list of ints, array float16 (n, 768) C-contiguous, as ``torch.cat(...).numpy()`` gives.
- shard ``--mismatch-shard`` has fewer vectors than passages (the release's shard 0: 14,905,277
  passages, 14,646,940 vectors): a block in the middle and the tail have no vector, so reading the
  vectors by position would pair most passages with the wrong vector; only a join on id is right.
- ``OUT/pes2o/pes2o.jsonl``: the papers as peS2o-like records (``id``, ``title``, ``text`` = title,
  blank line, body, ``year``, ``url``, ``created``); ``--pes2o-drop`` of them are left out (their
  passages must stay unmatched) and a few papers not in the release are added.
- with ``--npy``: the same vectors as ``passages_{s:02d}.npy`` + ``passages_{s:02d}_ids.npy``.

Text: words drawn from SciFact's vocabulary at its own frequencies, 30% from the paper's topic's
200 words (so BM25 has structure); paper lengths log-normal, mean ~1,300 words (peS2o's 237M
passages / 45M papers ~ 5.3 chunks each). Vectors: topic centre + paper offset + noise, 768-d, not
normalized (norms ~1.5, like mean-pooled contriever vectors), so passages of a topic cluster.
"""

from __future__ import annotations

import argparse
import json
import pickle
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCIFACT = REPO.parent / "shared" / "data" / "beir" / "scifact" / "corpus.jsonl"
DIM = 768
CHUNK_WORDS = 256
TOPIC_WORDS = 200
TOPIC_SHARE = 0.3


def vocabulary(path: Path = SCIFACT) -> tuple[np.ndarray, np.ndarray]:
    """Words of SciFact and their frequencies (the cumulative distribution to draw from)."""
    counts: Counter[str] = Counter()
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            counts.update(w for w in re.findall(r"[A-Za-z][A-Za-z0-9\-]+|\d+(?:\.\d+)?", rec["text"]) if len(w) < 30)
    words, freq = zip(*counts.most_common(), strict=True)
    cdf = np.cumsum(np.asarray(freq, dtype=np.float64))
    return np.asarray(words, dtype=object), cdf / cdf[-1]


class Generator:
    """Papers -> chunks -> vectors, deterministic in the seed."""

    def __init__(self, n_topics: int, seed: int = 0, *, texts: bool = True) -> None:
        """``texts=False``: vectors only (no SciFact vocabulary; same distributions, other draws)."""
        self.rng = np.random.default_rng(seed)
        if texts:
            self.words, self.cdf = vocabulary()
            mid = np.arange(200, min(len(self.words), 20_000))
            self.topic_words = np.stack([self.rng.choice(mid, TOPIC_WORDS, replace=False) for _ in range(n_topics)])
        self.centres = self.rng.standard_normal((n_topics, DIM)).astype(np.float32) * (1.2 / np.sqrt(DIM))
        self.n_topics = n_topics

    def paper(self) -> tuple[int, list[str], list[str]]:
        """(topic, title words, body words) of one paper."""
        rng = self.rng
        topic = int(rng.integers(self.n_topics))
        length = int(np.clip(rng.lognormal(6.9, 0.8), 40, 12_000))
        idx = np.searchsorted(self.cdf, rng.random(length))
        from_topic = rng.random(length) < TOPIC_SHARE
        idx[from_topic] = self.topic_words[topic][rng.integers(TOPIC_WORDS, size=int(from_topic.sum()))]
        title_idx = self.topic_words[topic][rng.integers(TOPIC_WORDS, size=int(rng.integers(6, 14)))]
        title = self.words[title_idx].tolist()
        title[0] = title[0].capitalize()
        return topic, title, self.words[idx].tolist()

    def vectors(self, topics: np.ndarray, papers: np.ndarray) -> np.ndarray:
        """float16 (n, 768): topic centre + per-paper offset + per-passage noise."""
        n = len(topics)
        uniq, inv = np.unique(papers, return_inverse=True)
        offsets = self.rng.standard_normal((len(uniq), DIM)).astype(np.float32) * (0.6 / np.sqrt(DIM))
        noise = self.rng.standard_normal((n, DIM)).astype(np.float32) * (0.45 / np.sqrt(DIM))
        return (self.centres[topics] + offsets[inv] + noise).astype(np.float16)


def release_vectors(n: int, *, seed: int = 0, batch: int = 100_000) -> Iterator[np.ndarray]:
    """The release's vectors without its texts, ``batch`` rows at a time (float16, n rows in all).

    Same model as ``write_release``: n // 2000 topics, papers of log-normal length (plus a 6-13 word
    title) cut into 256-word passages, each passage = topic centre + paper offset + noise. For
    measuring the index on this data without writing texts (bench/index_global.py --data release).
    """
    gen = Generator(n_topics=max(16, n // 2000), seed=seed, texts=False)
    rng = gen.rng
    paper_no, left = 0, n
    carry_t = carry_p = np.zeros(0, dtype=np.int64)
    while left:
        want = min(batch, left)
        topics, papers = [carry_t], [carry_p]
        have = len(carry_t)
        while have < want:
            m = max(16, (want - have) // 4)
            words = np.clip(rng.lognormal(6.9, 0.8, m), 40, 12_000).astype(np.int64) + rng.integers(6, 14, m)
            chunks = -(-words // CHUNK_WORDS)
            topics.append(np.repeat(rng.integers(gen.n_topics, size=m), chunks))
            papers.append(np.repeat(np.arange(paper_no, paper_no + m), chunks))
            paper_no += m
            have += int(chunks.sum())
        t, p = np.concatenate(topics), np.concatenate(papers)
        carry_t, carry_p = t[want:], p[want:]  # a paper cut at the batch end goes on in the next one
        yield gen.vectors(t[:want], p[:want])
        left -= want


def _shard(
    gen: Generator, s: int, shards: int, count_wanted: int, paper_no: int, *, passages: Any, pes2o: Any,
    pes2o_drop: float,
) -> tuple[list[int], list[int], int, int]:
    """Draw shard ``s``'s papers; write its passage lines to ``passages`` and its papers to ``pes2o``
    (either may be None: the same draws happen, nothing is written). Returns (topics, papers,
    next paper number, papers written to peS2o)."""
    topics: list[int] = []
    papers: list[int] = []
    count = in_pes2o = 0
    while count < count_wanted:
        topic, title_words, body_words = gen.paper()
        title = " ".join(title_words)
        toks = title_words + body_words  # == f"{title}\n\n{body}".split()
        chunks = [" ".join(toks[i : i + CHUNK_WORDS]) for i in range(0, len(toks), CHUNK_WORDS)]
        chunks = chunks[: count_wanted - count]  # the shard ends where its byte range ends
        for chunk in chunks:
            if passages is not None:
                passages.write(json.dumps({"text": chunk, "id": count, "shard_id": s, "num_shards": shards}) + "\n")
            topics.append(topic)
            papers.append(paper_no)
            count += 1
        pid = 10_000_000 + paper_no
        if gen.rng.random() >= pes2o_drop:
            # a cut-off last paper keeps its full text in peS2o: its lost chunks simply never match
            if pes2o is not None:
                text = f"{title}\n\n{' '.join(body_words)}"
                rec = {"id": str(pid), "title": title, "text": text, "year": 1990 + paper_no % 35,
                       "url": f"https://www.semanticscholar.org/paper/{pid}", "created": f"{1990 + paper_no % 35}-01-01T00:00:00.000Z",
                       "source": "s2orc/synthetic", "version": "v3"}
                pes2o.write(json.dumps(rec) + "\n")
            in_pes2o += 1
        paper_no += 1
    return topics, papers, paper_no, in_pes2o


def _shard_vectors(
    gen: Generator, topics: list[int], papers: list[int], *, mismatched: bool, missing: float,
) -> tuple[list[int], np.ndarray, list[int]]:
    """(ids with a vector, their vectors, ids left without one): the mismatched shard loses a block in
    the middle and the tail."""
    vecs = gen.vectors(np.asarray(topics), np.asarray(papers))
    count = len(topics)
    ids = list(range(count))
    dropped: list[int] = []
    if mismatched and missing > 0:
        k = max(2, int(count * missing))
        mid = count // 3
        dropped = list(range(mid, mid + k // 2)) + list(range(count - (k - k // 2), count))
        keep = np.ones(count, dtype=bool)
        keep[dropped] = False
        vecs = np.ascontiguousarray(vecs[keep])
        ids = [i for i in ids if keep[i]]
    return ids, vecs, dropped


def _write_vectors(out: Path, s: int, ids: list[int], vecs: np.ndarray, npy: bool) -> None:
    with (out / "embeddings" / f"passages_{s:02d}.pkl").open("wb") as fh:
        pickle.dump((ids, vecs), fh)  # the reference's call, default protocol
    if npy:
        np.save(out / "embeddings" / f"passages_{s:02d}.npy", vecs)
        np.save(out / "embeddings" / f"passages_{s:02d}_ids.npy", np.asarray(ids, dtype=np.int64))


def _extra_papers(gen: Generator, pes2o: Any, paper_no: int) -> None:
    """Papers peS2o has that the release does not (they must not disturb the join)."""
    for extra in range(max(1, paper_no // 100)):
        _, title_words, body_words = gen.paper()
        title = " ".join(title_words)
        pes2o.write(json.dumps({"id": f"x{extra}", "title": title, "text": f"{title}\n\n{' '.join(body_words)}", "year": 2024}) + "\n")


def _dirs(out: Path) -> None:
    for d in ("passages", "embeddings", "pes2o"):
        (out / d).mkdir(parents=True, exist_ok=True)


def write_release(
    out: Path, n: int, shards: int = 16, *, mismatch_shard: int | None = 0, missing: float = 0.0173,
    pes2o_drop: float = 0.05, npy: bool = False, seed: int = 0, progress: bool = True,
) -> dict:
    """Write the release and its peS2o file under ``out``; returns counts (and what was dropped)."""
    _dirs(out)
    gen = Generator(n_topics=max(16, n // 2000), seed=seed)
    per_shard = [n // shards + (1 if s < n % shards else 0) for s in range(shards)]
    info: dict = {"n": n, "shards": shards, "per_shard": [], "papers": 0, "papers_in_pes2o": 0}
    paper_no = 0
    t0 = time.perf_counter()
    with (out / "pes2o" / "pes2o.jsonl").open("w", encoding="utf-8") as pes2o:
        for s in range(shards):
            with (out / "passages" / f"raw_passages-{s}-of-{shards}.jsonl").open("w", encoding="utf-8") as fh:
                topics, papers, paper_no, in_pes2o = _shard(
                    gen, s, shards, per_shard[s], paper_no, passages=fh, pes2o=pes2o, pes2o_drop=pes2o_drop)
            info["papers_in_pes2o"] += in_pes2o
            ids, vecs, dropped = _shard_vectors(gen, topics, papers, mismatched=s == mismatch_shard, missing=missing)
            _write_vectors(out, s, ids, vecs, npy)
            info["per_shard"].append({"shard": s, "passages": len(topics), "vectors": len(ids), "vectors_missing": len(dropped)})
            if progress:
                print(f"shard {s}: {len(topics)} passages, {len(ids)} vectors ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
        _extra_papers(gen, pes2o, paper_no)
    info["papers"] = paper_no
    info["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "synthetic.json").write_text(json.dumps(info, indent=2))
    return info


# -- the same release streamed: a plan first (peS2o + each shard's generator state), then shard by shard

PLAN = "synthetic_plan.json"


def plan_release(
    out: Path, n: int, shards: int = 16, *, mismatch_shard: int | None = 0, missing: float = 0.0173,
    pes2o_drop: float = 0.05, seed: int = 0, progress: bool = True,
) -> dict:
    """Pass 1 of a streamed release: draw everything ``write_release`` draws, write only the peS2o
    file, and keep the generator's state at each shard's start (``OUT/synthetic_plan.json``).
    ``write_shard(out, s)`` then writes shard s exactly as ``write_release`` would have, so a
    release that would not fit on disk whole can be written, imported and deleted one shard at a time."""
    _dirs(out)
    gen = Generator(n_topics=max(16, n // 2000), seed=seed)
    per_shard = [n // shards + (1 if s < n % shards else 0) for s in range(shards)]
    plan: dict = {"n": n, "shards": shards, "seed": seed, "mismatch_shard": mismatch_shard, "missing": missing,
                  "pes2o_drop": pes2o_drop, "per_shard": [], "papers": 0, "papers_in_pes2o": 0}
    paper_no = 0
    t0 = time.perf_counter()
    with (out / "pes2o" / "pes2o.jsonl").open("w", encoding="utf-8") as pes2o:
        for s in range(shards):
            state, first_paper = gen.rng.bit_generator.state, paper_no
            topics, papers, paper_no, in_pes2o = _shard(
                gen, s, shards, per_shard[s], paper_no, passages=None, pes2o=pes2o, pes2o_drop=pes2o_drop)
            plan["papers_in_pes2o"] += in_pes2o
            ids, _, dropped = _shard_vectors(gen, topics, papers, mismatched=s == mismatch_shard, missing=missing)
            plan["per_shard"].append({"shard": s, "passages": len(topics), "vectors": len(ids),
                                      "vectors_missing": len(dropped), "first_paper": first_paper, "state": state})
            if progress:
                print(f"plan shard {s}: {len(topics)} passages ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
        _extra_papers(gen, pes2o, paper_no)
    plan["papers"] = paper_no
    plan["seconds"] = round(time.perf_counter() - t0, 1)
    (out / PLAN).write_text(json.dumps(plan))
    return plan


def write_shard(out: Path, s: int, *, npy: bool = False) -> dict:
    """Write shard ``s`` of a planned release (``plan_release``); files appear whole (renamed into place)."""
    plan = json.loads((out / PLAN).read_text())
    shards, spec = plan["shards"], plan["per_shard"][s]
    gen = Generator(n_topics=max(16, plan["n"] // 2000), seed=plan["seed"])
    gen.rng.bit_generator.state = spec["state"]
    stage = out / f".shard-{s}"
    shutil.rmtree(stage, ignore_errors=True)
    _dirs(stage)
    name = f"raw_passages-{s}-of-{shards}.jsonl"
    with (stage / "passages" / name).open("w", encoding="utf-8") as fh:
        topics, papers, _, _ = _shard(gen, s, shards, spec["passages"], spec["first_paper"], passages=fh, pes2o=None,
                                      pes2o_drop=plan["pes2o_drop"])
    ids, vecs, _ = _shard_vectors(gen, topics, papers, mismatched=s == plan["mismatch_shard"], missing=plan["missing"])
    _write_vectors(stage, s, ids, vecs, npy)
    _dirs(out)
    for sub in ("embeddings", "passages"):  # vectors first: a passages file is what makes the shard visible
        for f in sorted((stage / sub).iterdir()):
            f.replace(out / sub / f.name)
    shutil.rmtree(stage)
    return {"shard": s, "passages": len(topics), "vectors": len(ids)}


def delete_shard(out: Path, s: int) -> None:
    """Remove shard ``s``'s passages and vectors (once imported)."""
    shards = json.loads((out / PLAN).read_text())["shards"]
    (out / "passages" / f"raw_passages-{s}-of-{shards}.jsonl").unlink(missing_ok=True)
    for f in (out / "embeddings").glob(f"passages_{s:02d}*"):
        f.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=100_000, help="Passages in all.")
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--mismatch-shard", type=int, default=0, help="Shard with fewer vectors than passages (-1: none).")
    ap.add_argument("--missing", type=float, default=0.0173, help="Share of that shard's passages without a vector.")
    ap.add_argument("--pes2o-drop", type=float, default=0.05, help="Share of papers left out of the peS2o file.")
    ap.add_argument("--npy", action="store_true", help="Also write the vectors as .npy (+ _ids.npy).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plan", action="store_true", help="Streamed release, pass 1: the peS2o file and each shard's "
                    "generator state only (then --shard S writes shard S as the whole release would have it).")
    ap.add_argument("--shard", type=int, default=None, help="Write shard S of a release planned with --plan.")
    args = ap.parse_args()
    if args.shard is not None:
        print(json.dumps(write_shard(args.out, args.shard, npy=args.npy)))
        return
    if args.plan:
        plan = plan_release(args.out, args.n, args.shards, mismatch_shard=None if args.mismatch_shard < 0 else args.mismatch_shard,
                            missing=args.missing, pes2o_drop=args.pes2o_drop, seed=args.seed)
        print(json.dumps({k: v for k, v in plan.items() if k != "per_shard"}))
        return
    info = write_release(
        args.out, args.n, args.shards, mismatch_shard=None if args.mismatch_shard < 0 else args.mismatch_shard,
        missing=args.missing, pes2o_drop=args.pes2o_drop, npy=args.npy, seed=args.seed,
    )
    print(json.dumps({k: v for k, v in info.items() if k != "per_shard"}))


if __name__ == "__main__":
    main()
