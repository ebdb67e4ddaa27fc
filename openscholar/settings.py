"""One typed settings tree composed from each package's config model.

Precedence (highest first): explicit overrides, environment (``OPENSCHOLAR_`` prefix, ``__``
between nested names, e.g. ``OPENSCHOLAR_DATASTORE__PATH``), the config file (``--config``,
``OPENSCHOLAR_CONFIG``, or ``./openscholar.toml`` when present; TOML, YAML or JSON), defaults.
This module is the only place that reads the environment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from datastore.config import CorpusConfig, DatastoreConfig
from openscholar.config import AnswerConfig, CitationConfig, EvalConfig, LLMConfig, ServiceConfig
from openscholar.errors import ConfigError
from retriever.config import EmbedderConfig, RetrievalConfig
from router.config import RouterConfig

DEFAULT_CONFIG_FILE = Path("openscholar.toml")
_config_file: Path | None = None
log = logging.getLogger(__name__)

# Settings sections that were renamed: old name -> new name. The old names keep working (config files,
# OPENSCHOLAR_* variables, keyword overrides) with a deprecation message.
RENAMED_SECTIONS = {"pipeline": "answer"}
ENV_PREFIX = "OPENSCHOLAR_"


class _RenamedEnvSource(PydanticBaseSettingsSource):
    """``OPENSCHOLAR_PIPELINE__X`` read as ``OPENSCHOLAR_ANSWER__X`` (below the new names' priority)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for key, value in os.environ.items():
            upper = key.upper()
            for old, new in RENAMED_SECTIONS.items():
                head = f"{ENV_PREFIX}{old.upper()}__"
                if not upper.startswith(head):
                    continue
                path = [part.lower() for part in upper[len(head):].split("__") if part]
                if not path:
                    continue
                log.warning("%s is deprecated: use %s%s__%s", key, ENV_PREFIX, new.upper(), "__".join(p.upper() for p in path))
                node = found.setdefault(new, {})
                for part in path[:-1]:
                    node = node.setdefault(part, {})
                node[path[-1]] = value
        return found


class Settings(BaseSettings):
    """Every setting of the service; see `openscholar config show`."""

    model_config = SettingsConfigDict(
        env_prefix="OPENSCHOLAR_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    cache_dir: Path = Field(
        Path("~/.cache/openscholar"), description="Downloads, trained models and default datastores."
    )
    datastore: DatastoreConfig = Field(default_factory=DatastoreConfig, description="Datastore location and build.")
    corpus: CorpusConfig = Field(default_factory=CorpusConfig, description="The default corpus.")
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig, description="Passage embedder / base query encoder.")
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig, description="Retrieval pipeline.")
    router: RouterConfig = Field(default_factory=RouterConfig, description="RouterRetriever experts.")
    llm: LLMConfig = Field(default_factory=LLMConfig, description="LLM backend.")
    answer: AnswerConfig = Field(default_factory=AnswerConfig, description="The answer loop: self-feedback, time budgets.")
    citations: CitationConfig = Field(default_factory=CitationConfig, description="Citation verification.")
    service: ServiceConfig = Field(default_factory=ServiceConfig, description="HTTP API and workers.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, _RenamedEnvSource(settings_cls)]
        if _config_file is not None:
            suffix = _config_file.suffix.lower()
            if suffix == ".toml":
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=_config_file))
            elif suffix in (".yaml", ".yml"):
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=_config_file))
            else:
                sources.append(JsonConfigSettingsSource(settings_cls, json_file=_config_file))
        return tuple(sources)

    @model_validator(mode="before")
    @classmethod
    def _renamed_sections(cls, data: Any) -> Any:
        """A renamed section given under its old name (config file, overrides) counts under its new one."""
        if not isinstance(data, dict):
            return data
        for old, new in RENAMED_SECTIONS.items():
            if old in data:
                log.warning("settings section %r is deprecated: use %r", old, new)
                legacy = data.pop(old)
                current = data.get(new)
                if isinstance(legacy, dict) and isinstance(current, dict):
                    data[new] = _deep_merge(legacy, current)
                elif current is None:
                    data[new] = legacy
        return data

    # -- derived locations -------------------------------------------------------------------
    @property
    def cache_path(self) -> Path:
        return self.cache_dir.expanduser()

    @property
    def datastore_path(self) -> Path:
        return self.datastore.path.expanduser()

    def fingerprint(self) -> str:
        """A short hash of the effective settings (secrets excluded), for reports and caches."""
        blob = json.dumps(public_dict(self), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``top``, nested dicts merged key by key (``top`` wins)."""
    out = dict(base)
    for key, value in top.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _config_path(config_file: str | Path | None) -> Path | None:
    if config_file is not None:
        path = Path(config_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist", hint="pass an existing TOML, YAML or JSON file")
        if path.suffix.lower() not in (".toml", ".yaml", ".yml", ".json"):
            raise ConfigError(f"config file {path} has an unknown format", hint="use .toml, .yaml or .json")
        return path
    env = os.environ.get("OPENSCHOLAR_CONFIG")
    if env:
        return _config_path(env)
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings the CLI, API and workers all use, with a clear error on bad values."""
    global _config_file
    from pydantic import ValidationError

    _config_file = _config_path(config_file)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        where = f" (config file {_config_file})" if _config_file else ""
        raise ConfigError(
            f"invalid settings{where}: {problems}",
            hint="fix the value in the config file or the OPENSCHOLAR_* environment variable",
        ) from None
    finally:
        _config_file = None


def public_dict(settings: BaseModel) -> dict[str, Any]:
    """The settings as plain data with every secret masked."""

    def mask(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return "**********" if value.get_secret_value() else ""
        if isinstance(value, BaseModel):
            return {k: mask(getattr(value, k)) for k in type(value).model_fields}
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [mask(v) for v in value]
        if isinstance(value, dict):
            return {k: mask(v) for k, v in value.items()}
        return value

    return mask(settings)


def describe_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    """(dotted name, description) for every leaf setting: documentation and a test that none is bare."""
    rows: list[tuple[str, str]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        dotted = f"{prefix}{name}"
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(describe_fields(annotation, dotted + "."))
        else:
            rows.append((dotted, field.description or ""))
    return rows
