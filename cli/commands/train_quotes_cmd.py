"""`openscholar train quotes`: calibrate the quote scorer of evidence mode on SciFact train rationales."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import err, print_json, settings


def train_quotes(
    ctx: typer.Context,
    out: str = typer.Option("", "--out", help="Manifest to write (default: the packaged one)."),
    train_claims: int = typer.Option(300, "--train-claims", min=10, help="SciFact train claims to fit on (at most; "
                                     "the held-apart split leaves 265)."),
    dev_claims: int = typer.Option(100, "--dev-claims", min=10, help="Held-apart claims to evaluate on."),
    finding: str = typer.Option("default", "--finding", help="Comma-separated finding features of the new model; "
                                "'default': openscholar.quote_features.DEFAULT_FINDING; 'auto': the sets chosen by "
                                "cross-validation on the train claims."),
    write: str = typer.Option("if-better", "--write", help="Which model the manifest gets: 'if-better' (the "
                              "finding model only if it beats the two-feature one on held-apart MRR and top-1), "
                              "'finding' or 'old'."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch CPU threads."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Fit P(rationale sentence) = sigmoid(a * reranker logit + w * word overlap + finding features + b) and
    report MRR / top-1 of the rationale sentences on held-apart claims for the two-feature model, the new
    one, and each feature set with the two features and alone."""
    import torch

    from openscholar.components import scifact_dir
    from openscholar.quote_features import DEFAULT_FINDING, FEATURES
    from openscholar.quote_scorer import PACKAGED_QUOTE_SCORER, train_quote_scorer
    from openscholar.retrieval import reranker_path
    from retriever.reranker import CrossEncoderReranker

    torch.set_num_threads(threads)
    s = settings(ctx)
    sqa = s.corpus.scholarqabench_dir
    if sqa is None or not Path(sqa).expanduser().is_dir():
        raise typer.BadParameter("set corpus.scholarqabench_dir (the SciFact 208 must be excluded)")
    base = CrossEncoderReranker(s.retrieval.reranker.model_copy(update={"max_tokens": 96}), reranker_path(s, "reranker"))
    if write not in ("if-better", "finding", "old"):
        raise typer.BadParameter("use 'if-better', 'finding' or 'old'", param_hint="--write")
    names = (DEFAULT_FINDING if finding == "default" else None if finding == "auto"
             else tuple(f.strip() for f in finding.split(",") if f.strip()))
    if names is not None and set(names) - set(FEATURES):
        raise typer.BadParameter(f"unknown {sorted(set(names) - set(FEATURES))}; known: {', '.join(FEATURES)}",
                                 param_hint="--finding")
    manifest = train_quote_scorer(scifact_dir(s), Path(sqa).expanduser(), base,
                                  Path(out).expanduser() if out else PACKAGED_QUOTE_SCORER,
                                  train_claims=train_claims, dev_claims=dev_claims, finding=names, write=write)
    if as_json:
        print_json(manifest)
        return
    h = manifest["heldout"]
    for name, row in h["models"].items():
        err.print(f"  {name:<40} held-apart MRR {row['mrr']:.4f}  top-1 {row['top1']:.4f}", highlight=False)
    err.print(f"written: {h['model']} (the finding model beats the two-feature one: {h['finding_beats_old']})",
              highlight=False)
    err.print(f"quote scorer: a={manifest['a']:.4f} w={manifest['w']:.3f} b={manifest['b']:.3f}; held-apart MRR "
              f"{h['calibrated']['mrr']} (cross-encoder alone {h['cross_encoder_alone']['mrr']}, word overlap "
              f"{h['lexical']['mrr']}), top-1 {h['calibrated']['top1']}, Brier {h['brier']} (base rate "
              f"{h['brier_base_rate']})", highlight=False)


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    groups["train"].command("quotes")(train_quotes)
