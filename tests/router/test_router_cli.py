"""`openscholar router list|remove` on a real experts directory (CliRunner, real settings)."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from router.experts import ExpertStore
from router.pilots import PilotEntry, Pilots


def test_list_and_remove(planted: ExpertStore, monkeypatch) -> None:
    from cli.main import app

    monkeypatch.setenv("OPENSCHOLAR_ROUTER__EXPERTS_DIR", str(planted.root))
    vec = np.ones(384, dtype=np.float32)
    Pilots("m", 10, "", [PilotEntry("claims", "claims", 3, vec), PilotEntry("cs", "cs", 2, vec),
                         PilotEntry("broken", "claims", 1, vec), PilotEntry("claims", "broken", 1, vec)]).save(planted.root)
    runner = CliRunner()
    listed = runner.invoke(app, ["router", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.stdout)
    assert {r["name"]: r["pilots"] for r in data["experts"]} == {"broken": 1, "claims": 2, "cs": 1}
    assert data["routing_head"] is None  # none fitted yet

    removed = runner.invoke(app, ["router", "remove", "broken"])
    assert removed.exit_code == 0, removed.output
    assert planted.names() == ["claims", "cs"]
    left = Pilots.load(planted.root)
    assert sorted((e.source, e.expert) for e in left.entries) == [("claims", "claims"), ("cs", "cs")]
    # The routing head is refitted over the experts that remain (their pilot sets); none is retrained.
    from router.head import RoutingHead

    assert RoutingHead.load(planted.root).experts == ["claims", "cs"]
    listed = runner.invoke(app, ["router", "list", "--json"])
    assert json.loads(listed.stdout)["routing_head"]["experts"] == ["claims", "cs"]
    again = runner.invoke(app, ["router", "remove", "broken"])
    assert again.exit_code != 0 and "no expert 'broken'" in str(again.exception)
