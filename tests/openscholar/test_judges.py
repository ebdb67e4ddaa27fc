"""Every SupportJudge backend against the shared contract, and the nli backend's loading path on a
tiny NLI model the test builds and saves locally (labels in a deliberately unusual order)."""

from __future__ import annotations

from pathlib import Path

import pytest

from openscholar.config import CitationConfig
from openscholar.judges.lexical import LexicalJudge
from openscholar.judges.llm_judge import LLMJudge, read_relation
from openscholar.judges.nli import JudgeUnavailable, NLIJudge, label_indices, relation_of_label
from openscholar.judges.protocol import Judgement, SupportJudge
from openscholar.judges.registry import JUDGES, build_judge
from openscholar.judges.trained import PACKAGED_JUDGE, TrainedJudge
from openscholar.llm.scripted import ScriptedLLM
from tests.openscholar.judge_contract import SUPPORTED, UNRELATED, SupportJudgeContract

TINY_LABELS = {0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"}


@pytest.fixture(scope="module")
def tiny_nli(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT NLI classifier with the packaged MiniLM's tokenizer, saved as an HF directory.
    Its head is set so that the [CLS] features of a supported pair score higher on ENTAILMENT than an
    unrelated pair's (a few steps of training on the two contract pairs), so the contract can fail."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from retriever.st_embedder import resolve_model_path

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256, num_labels=3, id2label=TINY_LABELS,
                        label2id={v: k for k, v in TINY_LABELS.items()})
    model = BertForSequenceClassification(config)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = tokenizer([SUPPORTED[0], UNRELATED[0]], [SUPPORTED[1].split("\n", 1)[1], UNRELATED[1].split("\n", 1)[1]],
                      return_tensors="pt", padding=True)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(**batch).logits, torch.tensor([2, 1]))
        loss.backward()
        opt.step()
        opt.zero_grad()
    out = tmp_path_factory.mktemp("tiny-nli")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


class TestLexicalContract(SupportJudgeContract):
    backend = "lexical"

    @pytest.fixture
    def judge(self) -> LexicalJudge:
        return LexicalJudge()


class TestLLMContract(SupportJudgeContract):
    backend = "llm"

    @pytest.fixture
    def judge(self) -> LLMJudge:
        return LLMJudge(ScriptedLLM())  # the scripted default: Supports on word overlap, else Neither


class TestNLIContract(SupportJudgeContract):
    backend = "nli"

    @pytest.fixture
    def judge(self, tiny_nli: Path) -> NLIJudge:
        return NLIJudge(str(tiny_nli))


@pytest.fixture(scope="module")
def packaged_judge() -> TrainedJudge:
    if not (PACKAGED_JUDGE / "manifest.json").is_file():
        pytest.skip("no packaged support judge (run `openscholar train judge`)")
    return TrainedJudge(PACKAGED_JUDGE).warm_up()


class TestTrainedContract(SupportJudgeContract):
    backend = "trained"

    @pytest.fixture
    def judge(self, packaged_judge: TrainedJudge) -> TrainedJudge:
        return packaged_judge

    @pytest.mark.xfail(strict=True, reason="the packaged 3-way judge reads the contract's verbatim support as a "
                       "contradiction (supports 0.22, contradicts 0.63; the unrelated pair: supports 0.43): the bar a "
                       "better judge must clear")
    def test_support_ranks_above_unrelated(self, judge: SupportJudge) -> None:
        super().test_support_ranks_above_unrelated(judge)


class TestFromRegistryContract(SupportJudgeContract):
    """The registry's way of building a judge (``citations.judge``), not only the constructor."""

    backend = "lexical"

    @pytest.fixture
    def judge(self, tmp_path: Path) -> SupportJudge:
        judge = build_judge(CitationConfig(judge="lexical"), cache_dir=tmp_path)
        assert isinstance(judge, LexicalJudge)
        return judge


def test_every_registered_judge_runs_the_contract() -> None:
    """A judge added to the registry without a contract class (in any tests/openscholar module) fails this test."""
    import importlib
    import pkgutil

    import tests.openscholar as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name.startswith("test_"):
            importlib.import_module(f"{package.__name__}.{module.name}")
    found: list[type] = []
    todo = list(SupportJudgeContract.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    assert {cls.backend for cls in found} == set(JUDGES.names())


def test_nli_probabilities_match_the_model_read_directly(tiny_nli: Path):
    """The reference: softmax of the saved model's logits, mapped by its own id2label names."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_nli).eval()
    tok = AutoTokenizer.from_pretrained(tiny_nli)
    statement, evidence = SUPPORTED[0], SUPPORTED[1].split("\n", 1)[1]
    with torch.inference_mode():
        p = torch.softmax(model(**tok([statement], [evidence], return_tensors="pt")).logits, -1)[0].tolist()
    judge = NLIJudge(str(tiny_nli), window_sentences=5)  # one window: the whole two-sentence passage
    (j,) = judge.judge([(statement, SUPPORTED[1])])
    assert (j.supports, j.contradicts, j.neither) == pytest.approx((p[2], p[0], p[1]), abs=1e-5)
    assert j.supports > 0.5 and j.relation() == "supports"


def test_nli_reads_long_passages_window_by_window(tiny_nli: Path):
    judge = NLIJudge(str(tiny_nli), window_sentences=1, windows_per_passage=None)
    filler = "Participants were recruited in three cities. The protocol was approved by an ethics board."
    passage = f"T\n{filler} {SUPPORTED[1].split(chr(10), 1)[1]} {filler}"
    windows = judge.windows_of(SUPPORTED[0], passage)
    assert len(windows) == 6 and windows[3] == "Daily aspirin reduced the incidence of colorectal cancer by 24% over twenty years."
    per_window = judge.probabilities([(SUPPORTED[0], w) for w in windows])
    (j,) = judge.judge([(SUPPORTED[0], passage)])
    assert j.supports == pytest.approx(max(p[0] for p in per_window), abs=1e-6)
    assert j.contradicts == pytest.approx(max(p[1] for p in per_window), abs=1e-6)
    assert j.neither == pytest.approx(min(p[2] for p in per_window), abs=1e-6)


def test_nli_labels_are_read_or_must_be_given(tiny_nli: Path, tmp_path: Path):
    assert [relation_of_label(n) for n in ("entailment", "not_entailment", "CONTRADICTION", "neutral", "LABEL_0")] == [
        "supports", "neither", "contradicts", "neither", None]
    assert label_indices(TINY_LABELS) == {"supports": [2], "contradicts": [0], "neither": [1]}
    with pytest.raises(JudgeUnavailable, match="cannot tell") as err:
        label_indices({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"})
    assert "nli_labels" in err.value.hint
    mapped = label_indices({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"},
                           {"LABEL_0": "contradicts", "LABEL_1": "neither", "LABEL_2": "supports"})
    assert mapped == {"supports": [2], "contradicts": [0], "neither": [1]}
    with pytest.raises(JudgeUnavailable, match="cannot load the NLI model") as missing:
        NLIJudge(str(tmp_path / "nowhere")).warm_up()
    assert "nli_model" in missing.value.hint


def test_nli_judge_from_settings(tiny_nli: Path, tmp_path: Path):
    from openscholar.judges import build_judge
    from openscholar.settings import Settings

    s = Settings(cache_dir=tmp_path, citations={"judge": "nli", "nli_model": str(tiny_nli), "judge_windows": 3})
    judge = build_judge(s.citations, cache_dir=s.cache_path)
    assert isinstance(judge, NLIJudge) and judge.windows_per_passage == 3
    assert judge.score([SUPPORTED])[0] > judge.score([UNRELATED])[0]


def test_llm_judge_reads_three_relations():
    assert read_relation("Supports.") == Judgement(1.0, 0.0, 0.0)
    assert read_relation("Contradicts") == Judgement(0.0, 1.0, 0.0)
    assert read_relation("Neither") == read_relation("No") == Judgement(0.0, 0.0, 1.0)
    assert read_relation("yes") == Judgement(1.0, 0.0, 0.0)
    assert read_relation("perhaps").supports == 0.5
    llm = ScriptedLLM(["Contradicts", "Supports"])
    out = LLMJudge(llm).judge([("s1", "T\np1"), ("s2", "p2")])
    assert [j.relation() for j in out] == ["contradicts", "supports"]
    assert "Statement: s1" in llm.calls[0][1][-1]["content"] and "Title: T" in llm.calls[0][1][-1]["content"]


def test_unknown_judge_lists_the_known_ones(tmp_path: Path):
    from datastore.registry import UnknownName
    from openscholar.judges.registry import JUDGES

    with pytest.raises(UnknownName) as err:
        JUDGES.get("oracle")
    assert all(n in err.value.hint for n in ("trained", "nli", "llm", "lexical"))
