"""The 3-way judge's training options that need no model: balanced batches and window inputs."""

from __future__ import annotations

from collections import Counter

from openscholar.judges.support_data import JudgePair
from openscholar.judges.train_support import SupportJudgeTrainConfig, _batches, closest_window


def _pairs() -> list[JudgePair]:
    labels = ["neither"] * 30 + ["contradicts"] * 9 + ["supports"] * 3
    return [JudgePair(f"g{i % 5}", f"statement {i}", f"evidence {i}", lab, "scifact-support")  # type: ignore[arg-type]
            for i, lab in enumerate(labels)]


def test_balanced_batches_hold_every_label_equally():
    config = SupportJudgeTrainConfig(batch_size=12, balanced_batches=True)
    batches = _batches(_pairs(), config)
    for _ in range(5):
        counts = Counter(p.label for p in next(batches))
        assert counts == {"supports": 4, "contradicts": 4, "neither": 4}
    plain = Counter(p.label for p in next(_batches(_pairs(), SupportJudgeTrainConfig(batch_size=42))))
    assert plain["neither"] == 30  # without the option: one shuffled pass, the data's own shares


def test_window_inputs_keep_the_window_closest_to_the_statement():
    evidence = ("Participants were recruited in twelve clinics. Randomization was stratified by age. "
                "Aspirin reduced colorectal cancer incidence by 24%. Adverse events were rare. Funding was public.")
    pair = JudgePair("g", "Aspirin reduces colorectal cancer incidence.", evidence, "supports", "multi-cited")
    cut = closest_window(pair, 2)
    assert "Aspirin reduced colorectal cancer incidence by 24%." in cut.evidence
    assert len(cut.evidence.split()) < len(evidence.split()) and cut.label == "supports" and cut.group == "g"
