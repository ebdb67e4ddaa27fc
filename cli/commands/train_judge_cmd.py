"""`openscholar train judge`: train the citation support judge on SciFact rationales (train split)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cli.common import err, print_json, settings


def train_judge(
    ctx: typer.Context,
    out_dir: Path = typer.Option(None, "--out", help="Artifact directory (default: cache_dir/judge)."),
    scifact: Path = typer.Option(None, "--scifact", help="BEIR SciFact directory (default: corpus.scifact_dir)."),
    epochs: int = typer.Option(3, "--epochs", min=1, help="Passes over the training pairs."),
    holdout: float = typer.Option(0.15, "--holdout", min=0.05, max=0.5, help="Fraction of claims held apart."),
    limit: int = typer.Option(None, "--limit", min=1, help="Train on at most this many pairs (smoke runs)."),
    threads: int = typer.Option(0, "--threads", min=0, help="torch CPU threads (0: default)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Train the support judge (packaged MiniLM cross-encoder, LoRA on its last layer) in a few CPU minutes.

    Uses SciFact rationale labels of train-split claims only, and reports accuracy on held-apart claims.
    Point citations.judge_path at --out to use a judge written elsewhere than the default.
    """
    from openscholar.components import scifact_dir
    from openscholar.judges.training import train_judge as run

    s = settings(ctx)
    source = scifact.expanduser() if scifact else scifact_dir(s)
    target = out_dir.expanduser() if out_dir else s.cache_path / "judge"
    manifest = run(source, target, epochs=epochs, holdout=holdout, limit=limit, threads=threads, seed=seed)
    if as_json:
        print_json(manifest)
        return
    h = manifest["heldout"]
    err.print(
        f"judge written to {target} in {manifest['training']['seconds']:.0f}s: held-out accuracy {h['accuracy']:.3f} "
        f"(balanced {h['balanced_accuracy']:.3f}, majority baseline {h['majority_baseline']:.3f}) on {h['pairs']} pairs "
        f"of {h['claims']} claims",
        highlight=False,
    )
    err.print(json.dumps(h["accuracy_by_kind"]), highlight=False)


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    groups["train"].command("judge")(train_judge)
