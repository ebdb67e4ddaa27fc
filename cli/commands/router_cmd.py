"""`openscholar router ...`: train, add, remove and list domain experts; compute pilots; route a query."""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import err, out, print_json, settings
from openscholar.settings import Settings


def _experts_dir(s: Settings) -> Path:
    from router.config import resolve_experts_dir

    return resolve_experts_dir(s.router, s.cache_path)


def _negatives(s: Settings, use: bool):  # noqa: ANN202 - router.training.CorpusNegatives | None
    """The datastore's frozen vectors (extra negatives and pilot candidates), if one is there."""
    if not use:
        return None
    from datastore.errors import ScholarError as _Err
    from openscholar.components import open_datastore
    from router.training import CorpusNegatives

    try:
        return CorpusNegatives.from_datastore(open_datastore(s))
    except _Err as exc:
        err.print(f"[yellow]no datastore negatives ({exc.message}); training on in-batch negatives only[/]")
        return None


def _backbone(s: Settings):  # noqa: ANN202 - router.backbone.Backbone
    from router.backbone import Backbone

    return Backbone(s.embedder.model, threads=s.router.training.threads or s.embedder.threads)


def _refit_head(s: Settings, root: Path, backbone=None) -> None:  # noqa: ANN001
    """Refit the routing head over every expert's pilot set (seconds; no expert is retrained)."""
    from router.experts import ExpertStore
    from router.head import HEAD_FILE, fit_head

    experts = ExpertStore(root).experts()
    if len(experts) < 2:
        (root / HEAD_FILE).unlink(missing_ok=True)
        return
    head = fit_head(backbone or _backbone(s), experts, layer=s.router.head_layer)
    head.save(root)
    out.print("routing head refitted; 5-fold CV accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in head.cv_accuracy.items()))


def _add_pilots(s: Settings, name: str, negatives) -> None:  # noqa: ANN001
    from router.errors import NoExperts
    from router.experts import ExpertStore
    from router.pilots import Pilots, add_expert_pilots, compute_pilots

    root = _experts_dir(s)
    store = ExpertStore(root)
    corpus = negatives.vectors if negatives else None
    lookup = negatives.lookup if negatives else None
    backbone = _backbone(s)
    try:
        pilots = Pilots.load(root)
    except NoExperts:
        pilots = compute_pilots(backbone, store.experts(), corpus, lookup, k=s.router.pilot_k,
                                negatives_source=negatives.source if negatives else "")
    else:
        others = [e for e in store.experts() if e.name in pilots.expert_hashes and e.name != name]
        pilots = add_expert_pilots(pilots, backbone, store.get(name), others, corpus, lookup)
    pilots.save(root)
    out.print(f"pilots of {name}: " + ", ".join(f"{e.expert} x{e.count}" for e in pilots.entries if e.source == name))
    _refit_head(s, root, backbone)


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    router = typer.Typer(help="RouterRetriever: domain-expert query encoders routed by pilot embeddings.", no_args_is_help=True)
    app.add_typer(router, name="router")

    @router.command("train-expert")
    def train_expert(
        ctx: typer.Context,
        name: str = typer.Argument(..., help="Expert name (a directory under router.experts_dir)."),
        pairs: Path = typer.Option(..., "--pairs", exists=True, dir_okay=False, help='JSONL of {"query", "positive"} pairs.'),
        domain: str = typer.Option("", "--domain", help="The domain in words (manifest)."),
        steps: int = typer.Option(None, "--steps", min=1, help="Max optimizer steps (default router.training.max_steps)."),
        seed: int = typer.Option(None, "--seed", help="Seed (default router.training.seed)."),
        corpus_negatives: bool = typer.Option(True, "--corpus-negatives/--in-batch-only", help="Use the datastore vectors as extra negatives."),
        pilots: bool = typer.Option(True, "--pilots/--no-pilots", help="Add the new expert's pilots afterwards."),
    ) -> None:
        """Train one expert's query-side LoRA on PAIRS, save it with its manifest, add its pilots."""
        from router.experts import ExpertStore, manifest_summary
        from router.training import train_from_file

        s = settings(ctx)
        store = ExpertStore(_experts_dir(s))
        if name in store.names():
            raise typer.BadParameter(f"expert {name!r} exists in {store.root}; `openscholar router remove {name}` first", param_hint="NAME")
        update = {k: v for k, v in {"max_steps": steps, "seed": seed, "corpus_negatives": corpus_negatives}.items() if v is not None}
        rc = s.router.model_copy(update={"training": s.router.training.model_copy(update=update)})
        negatives = _negatives(s, corpus_negatives or pilots)
        expert = train_from_file(_backbone(s), store, name, domain or name, pairs, router_config=rc, negatives=negatives)
        print_json(manifest_summary(expert.manifest))
        if pilots:
            _add_pilots(s, name, negatives)

    @router.command("pilots")
    def pilots_cmd(ctx: typer.Context) -> None:
        """Recompute every pilot embedding from the experts' manifests and pilot sets (Algorithm 1), and
        refit the routing head on the same pilot sets."""
        from router.experts import ExpertStore
        from router.pilots import compute_pilots

        s = settings(ctx)
        root = _experts_dir(s)
        negatives = _negatives(s, True)
        backbone = _backbone(s)
        pilots = compute_pilots(backbone, ExpertStore(root).experts(), negatives.vectors if negatives else None,
                                negatives.lookup if negatives else None, k=s.router.pilot_k,
                                negatives_source=negatives.source if negatives else "")
        path = pilots.save(root)
        for e in sorted(pilots.entries, key=lambda e: (e.source, e.expert)):
            out.print(f"{e.source:>14} -> {e.expert:<14} {e.count:>4} queries")
        out.print(f"wrote {path}")
        _refit_head(s, root, backbone)

    @router.command("list")
    def list_cmd(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """The experts, their training data and metrics, and their pilots."""
        from router.errors import NoExperts
        from router.experts import ExpertStore, manifest_summary
        from router.pilots import Pilots

        root = _experts_dir(settings(ctx))
        try:
            pilots = Pilots.load(root)
        except NoExperts:
            pilots = None
        rows = []
        for e in ExpertStore(root).experts():
            row = manifest_summary(e.manifest)
            row["pilots"] = len(pilots.of(e.name)) if pilots else 0
            rows.append(row)
        from router.head import RoutingHead

        try:
            h = RoutingHead.load(root)
            head = {"experts": h.experts, "layer": h.layer, "cv_accuracy": h.cv_accuracy}
        except NoExperts:
            head = None
        if as_json:
            print_json({"experts_dir": str(root), "experts": rows, "routing_head": head})
            return
        out.print(f"experts in {root}:")
        if not rows:
            out.print("  (none) train one with `openscholar router train-expert NAME --pairs F`")
        for r in rows:
            out.print(f"  [bold]{r['name']}[/] pilots={r['pilots']} pairs={r['pairs']} train={r['train_seconds']}s  {r['domain']}", highlight=False)
        if head:
            acc = ", ".join(f"{k} {v:.3f}" for k, v in head["cv_accuracy"].items())
            out.print(f"routing head: base layer {head['layer']}, 5-fold CV accuracy {acc}", highlight=False)
        else:
            out.print("routing head: none (routing by pilots; `openscholar router pilots` fits one)")

    @router.command("add")
    def add_cmd(
        ctx: typer.Context,
        src: Path = typer.Argument(..., exists=True, file_okay=False, help="A trained expert directory (manifest.json + adapter/)."),
        name: str = typer.Option(None, "--name", help="Name in the store (default: the manifest's)."),
    ) -> None:
        """Add a trained expert and compute its pilots; no other expert is retrained or re-piloted."""
        from router.experts import ExpertStore

        s = settings(ctx)
        expert = ExpertStore(_experts_dir(s)).import_dir(src, name)
        _add_pilots(s, expert.name, _negatives(s, True))

    @router.command("remove")
    def remove_cmd(ctx: typer.Context, name: str = typer.Argument(..., help="Expert to drop.")) -> None:
        """Drop an expert's adapter and its pilots (the routing head is refitted); the other experts are untouched."""
        from router.errors import NoExperts
        from router.experts import ExpertStore
        from router.pilots import Pilots, remove_expert_pilots

        s = settings(ctx)
        root = _experts_dir(s)
        ExpertStore(root).remove(name)
        try:
            remove_expert_pilots(Pilots.load(root), name).save(root)
        except NoExperts:
            pass
        _refit_head(s, root)
        out.print(f"removed {name} from {root}")

    @router.command("route")
    def route_cmd(ctx: typer.Context, query: str = typer.Argument(..., help="A query.")) -> None:
        """Which expert the router picks for QUERY, with every expert's pilot similarity (and head probability)."""
        from router.factory import build_router_encoder

        s = settings(ctx)
        enc = build_router_encoder(s.router, s.embedder, s.cache_path)
        print_json(enc.encode_queries([query]).routing[0].to_dict())
