"""`openscholar train judge`: the 3-way support judge (supports / contradicts / neither)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cli.common import err, print_json, settings


def train_judge(
    ctx: typer.Context,
    out_dir: Path = typer.Option(None, "--out", help="Artifact directory (default: cache_dir/judge)."),
    scifact: Path = typer.Option(None, "--scifact", help="BEIR SciFact directory (default: corpus.scifact_dir)."),
    scholarqabench: Path = typer.Option(None, "--scholarqabench", help="ScholarQABench directory "
                                        "(default: corpus.scholarqabench_dir): Multi dev answers, the SciFact 208 to exclude."),
    epochs: float = typer.Option(2.0, "--epochs", min=0.01, help="Passes over the training pairs."),
    max_seconds: float = typer.Option(2400.0, "--max-seconds", min=1, help="Wall-clock cap of the optimizer loop."),
    limit: int = typer.Option(None, "--limit", min=1, help="Train on at most this many pairs (smoke runs)."),
    threads: int = typer.Option(1, "--threads", min=0, help="torch CPU threads (0: torch's default)."),
    seed: int = typer.Option(13, "--seed", help="Random seed."),
    window_inputs: bool = typer.Option(False, "--window-inputs", help="Train on each evidence text's window closest "
                                       "to the statement (what the judge reads in use)."),
    balanced_batches: bool = typer.Option(False, "--balanced-batches", help="Equal shares of the three labels in "
                                          "every batch."),
    calibrate_only: bool = typer.Option(False, "--calibrate-only", help="Only (re)choose the support threshold of "
                                        "the judge at --out on the held-apart pairs."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Train the support judge: MiniLM + LoRA with a 3-way head, on SciFact TRAIN claims (none touching the
    ScholarQABench SciFact 208), ScholarQA-Multi dev attributions and synthetic hard negatives.

    Held-apart claim clusters and questions are only evaluated; the manifest records the data, the overlap
    check and the figures. Point citations.judge_path at --out to use a judge written elsewhere than the default.
    """
    from openscholar.components import scifact_dir
    from openscholar.judges.train_support import SupportJudgeTrainConfig, train_support_judge

    s = settings(ctx)
    source = scifact.expanduser() if scifact else scifact_dir(s)
    sqa = scholarqabench.expanduser() if scholarqabench else s.corpus.scholarqabench_dir
    if sqa is None or not Path(sqa).expanduser().is_dir():
        raise typer.BadParameter("no ScholarQABench directory: pass --scholarqabench or set corpus.scholarqabench_dir",
                                 param_hint="--scholarqabench")
    target = out_dir.expanduser() if out_dir else s.cache_path / "judge"
    config = SupportJudgeTrainConfig(epochs=epochs, max_seconds=max_seconds, limit=limit, threads=threads, seed=seed,
                                     window_inputs=window_inputs, balanced_batches=balanced_batches)
    if calibrate_only:
        import torch

        from openscholar.judges.support_data import build_judge_pairs
        from openscholar.judges.train_support import calibrate_threshold

        torch.set_num_threads(max(1, threads))
        dev = build_judge_pairs(source, Path(sqa).expanduser(), dev_fraction=config.dev_fraction,
                                multi_dev_fraction=config.multi_dev_fraction)["dev"]
        manifest = calibrate_threshold(target, dev)
        err.print(f"support threshold {manifest['heldout']['support_threshold']} (balanced accuracy "
                  f"{manifest['heldout']['support_balanced_accuracy_at_threshold']})", highlight=False)
        return
    manifest = train_support_judge(source, Path(sqa).expanduser(), target, config)
    if as_json:
        print_json(manifest)
        return
    h, t = manifest["heldout"], manifest["training"]
    err.print(
        f"judge written to {target} in {t['train_seconds']:.0f}s ({t['steps']} steps, {t['stop_reason']}): held-apart "
        f"3-way accuracy {h['accuracy_3way']:.3f} (majority {h['majority_3way']:.3f}), support accuracy "
        f"{h['support_accuracy']:.3f} on {h['pairs']} pairs of {h['groups']} groups",
        highlight=False,
    )
    err.print(json.dumps(h["accuracy_by_source"]), highlight=False)


def train_stacked_judge(
    ctx: typer.Context,
    out_dir: Path = typer.Option(None, "--out", help="Artifact directory (default: cache_dir/judge-stacked)."),
    scifact: Path = typer.Option(None, "--scifact", help="BEIR SciFact directory (default: corpus.scifact_dir)."),
    scholarqabench: Path = typer.Option(None, "--scholarqabench", help="ScholarQABench directory "
                                        "(default: corpus.scholarqabench_dir)."),
    trained: Path = typer.Option(None, "--trained", help="The trained judge the stack reads (default: the packaged one)."),
    cache: Path = typer.Option(None, "--cache", help="An .npz keeping the pair features between runs."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch CPU threads."),
    seed: int = typer.Option(13, "--seed", help="Seed of the grouped folds."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Fit the stacked support judge: a logistic combiner over word overlap, the MiniLM bi-encoder cosine,
    the trained 3-way judge's logits and negation / number / direction mismatch detectors.

    Fit and calibrated (grouped cross-validation) on the train groups only; the held-apart groups are
    evaluated and recorded in the manifest next to the lexical judge. Set citations.judge 'stacked'.
    """
    import torch

    from openscholar.components import scifact_dir
    from openscholar.judges.train_stacked import train_stacked_judge as fit
    from openscholar.judges.trained import PACKAGED_JUDGE

    s = settings(ctx)
    source = scifact.expanduser() if scifact else scifact_dir(s)
    sqa = scholarqabench.expanduser() if scholarqabench else s.corpus.scholarqabench_dir
    if sqa is None or not Path(sqa).expanduser().is_dir():
        raise typer.BadParameter("no ScholarQABench directory: pass --scholarqabench or set corpus.scholarqabench_dir",
                                 param_hint="--scholarqabench")
    torch.set_num_threads(threads)
    target = out_dir.expanduser() if out_dir else s.cache_path / "judge-stacked"
    manifest = fit(source, Path(sqa).expanduser(), target, trained_path=trained.expanduser() if trained else PACKAGED_JUDGE,
                   seed=seed, cache=cache.expanduser() if cache else None)
    if as_json:
        print_json(manifest)
        return
    h = manifest["heldout"]
    err.print(f"stacked judge written to {target} (support threshold {manifest['calibration']['support_threshold']}, "
              f"chosen on train folds): held-apart AUC Multi {h['stacked']['multi']['auc']} (lexical "
              f"{h['lexical']['multi']['auc']}), SciFact {h['stacked']['scifact']['auc']} (lexical "
              f"{h['lexical']['scifact']['auc']})", highlight=False)


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    groups["train"].command("judge")(train_judge)
    groups["train"].command("stacked-judge")(train_stacked_judge)
