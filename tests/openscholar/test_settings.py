"""Settings: env prefix and nesting, config files, precedence, masking, documentation, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from openscholar.errors import ConfigError
from openscholar.settings import Settings, describe_fields, load_settings, public_dict


def test_env_prefix_and_nested_delimiter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENSCHOLAR_DATASTORE__PATH", "/data/ds")
    monkeypatch.setenv("OPENSCHOLAR_DATASTORE__IVFPQ__NPROBE", "7")
    monkeypatch.setenv("OPENSCHOLAR_RETRIEVAL__TOP_K", "4")
    s = load_settings()
    assert s.datastore.path == Path("/data/ds")
    assert s.datastore.ivfpq.nprobe == 7
    assert s.retrieval.top_k == 4


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".json"])
def test_config_file_formats_and_env_precedence(suffix: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    data = {"cache_dir": "/c", "datastore": {"shard_size": 123, "index": "hnsw"}}
    path = tmp_path / f"conf{suffix}"
    if suffix == ".toml":
        path.write_text('cache_dir = "/c"\n[datastore]\nshard_size = 123\nindex = "hnsw"\n')
    elif suffix == ".yaml":
        path.write_text("cache_dir: /c\ndatastore:\n  shard_size: 123\n  index: hnsw\n")
    else:
        path.write_text(json.dumps(data))
    monkeypatch.setenv("OPENSCHOLAR_DATASTORE__INDEX", "flat")
    s = load_settings(path)
    assert s.cache_dir == Path("/c") and s.datastore.shard_size == 123
    assert s.datastore.index == "flat"  # environment beats the file
    assert load_settings(path, cache_dir="/override").cache_dir == Path("/override")


def test_project_file_is_picked_up_from_the_working_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "openscholar.toml").write_text("[retrieval]\ntop_k = 3\n")
    assert load_settings().retrieval.top_k == 3
    monkeypatch.setenv("OPENSCHOLAR_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()


def test_invalid_values_name_the_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENSCHOLAR_DATASTORE__INDEX", "annoy")
    with pytest.raises(ConfigError, match="datastore.index"):
        load_settings()
    monkeypatch.delenv("OPENSCHOLAR_DATASTORE__INDEX")
    bad = tmp_path / "bad.toml"
    bad.write_text("[datastore]\nno_such_field = 1\n")
    with pytest.raises(ConfigError, match="no_such_field"):
        load_settings(bad)


def test_every_setting_is_documented() -> None:
    undocumented = [name for name, doc in describe_fields(Settings) if not doc.strip()]
    assert undocumented == []
    assert len(describe_fields(Settings)) > 30


def test_secrets_are_masked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENSCHOLAR_LLM__API_KEY", "sk-very-secret")
    s = load_settings()
    assert s.llm.api_key.get_secret_value() == "sk-very-secret"
    dumped = json.dumps(public_dict(s))
    assert "sk-very-secret" not in dumped and "**********" in dumped
    env = {**os.environ, "OPENSCHOLAR_LLM__API_KEY": "sk-very-secret"}
    for args in (["config", "show"], ["config", "show", "--json"]):
        out = subprocess.run([sys.executable, "-m", "cli", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "sk-very-secret" not in out.stdout and "llm.api_key" in out.stdout.replace('"api_key"', "llm.api_key")
    shown = json.loads(subprocess.run([sys.executable, "-m", "cli", "config", "show", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120).stdout)
    assert shown["llm"]["api_key"] == "**********"


def test_fingerprint_changes_with_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    a = load_settings().fingerprint()
    assert a == load_settings().fingerprint()
    assert a != load_settings(retrieval={"top_k": 2}).fingerprint()


def test_every_config_model_is_strict_on_its_own() -> None:
    """Strictness is each model's own (StrictModel), not a rewrite done when settings is imported:
    a fresh interpreter that never imports openscholar.settings still rejects a misspelt key."""
    code = (
        "import sys\n"
        "from pydantic import ValidationError\n"
        "from datastore.config import DatastoreConfig\n"
        "from retriever.config import RerankerConfig\n"
        "from router.config import RouterConfig\n"
        "from openscholar.config import LLMConfig\n"
        "assert 'openscholar.settings' not in sys.modules\n"
        "bad = 0\n"
        "for cls, key in ((DatastoreConfig, 'shard_sizee'), (RerankerConfig, 'modell'), (RouterConfig, 'xperts'),"
        " (LLMConfig, 'bakend')):\n"
        "    try:\n"
        "        cls(**{key: 5})\n"
        "    except ValidationError as exc:\n"
        "        bad += 'extra' in str(exc).lower()\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "4"


def test_every_settings_model_derives_from_strict_model() -> None:
    from pydantic import BaseModel

    from datastore.strict import StrictModel

    def walk(model: type[BaseModel]) -> list[type[BaseModel]]:
        found = [model]
        for field in model.model_fields.values():
            sub = field.annotation
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                found += walk(sub)
        return found

    models = walk(Settings)[1:]
    assert len(models) >= 10
    assert all(issubclass(m, StrictModel) for m in models), [m.__name__ for m in models if not issubclass(m, StrictModel)]


def test_answer_loop_settings_renamed_old_names_still_work(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """"pipeline" means the retrieval pipeline only; the answer loop's section is "answer". The old
    section name keeps working from the environment and from config files, with a deprecation message."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENSCHOLAR_PIPELINE__MAX_FEEDBACK", "2")
    monkeypatch.setenv("OPENSCHOLAR_PIPELINE__BUDGETS__TOTAL_S", "33")
    with caplog.at_level("WARNING"):
        s = load_settings()
    assert s.answer.max_feedback == 2 and s.answer.budgets.total_s == 33.0
    assert "OPENSCHOLAR_PIPELINE__MAX_FEEDBACK is deprecated: use OPENSCHOLAR_ANSWER__MAX_FEEDBACK" in caplog.text
    monkeypatch.setenv("OPENSCHOLAR_ANSWER__MAX_FEEDBACK", "1")  # the new name wins over the old one
    assert load_settings().answer.max_feedback == 1
    monkeypatch.delenv("OPENSCHOLAR_PIPELINE__MAX_FEEDBACK")
    monkeypatch.delenv("OPENSCHOLAR_PIPELINE__BUDGETS__TOTAL_S")
    monkeypatch.delenv("OPENSCHOLAR_ANSWER__MAX_FEEDBACK")
    conf = tmp_path / "old.toml"
    conf.write_text("[pipeline]\nfeedback_top_k = 7\n[retrieval]\npipeline = \"dense\"\n")
    caplog.clear()
    with caplog.at_level("WARNING"):
        s = load_settings(conf)
    assert s.answer.feedback_top_k == 7 and s.retrieval.pipeline == "dense"
    assert "settings section 'pipeline' is deprecated: use 'answer'" in caplog.text
    with pytest.raises(ConfigError, match="answer.feedback_top_kk"):
        load_settings(conf, answer={"feedback_top_kk": 1})
