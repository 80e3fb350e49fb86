"""Settings: defaults, then ``devora.toml``, then ``DEVORA_*`` environment variables.

Every key is validated: an unknown key is an error that names the closest known one, so a
typo never silently falls back to a default. API keys are read from the environment only;
a settings file that holds one is refused (it would end up in backups and repositories).

Environment variables: ``DEVORA_WORKSPACE`` (the workspace folder), ``DEVORA_CONFIG`` (a
settings file), and ``DEVORA_<SECTION>__<KEY>`` for any setting, e.g.
``DEVORA_EVENTS__ROLL_MAX_EVENTS=50000``.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from devora_lab.errors import ConfigError, SecretInConfigError

__all__ = [
    "DEFAULT_WORKSPACE",
    "BudgetSettings",
    "CacheSettings",
    "EventSettings",
    "PricingSettings",
    "ProviderSettings",
    "RagSettings",
    "Settings",
    "load_settings",
    "resolve_workspace",
]

DEFAULT_WORKSPACE: Final = "devora-workspace"
CONFIG_FILE_NAME: Final = "devora.toml"
_ENV_PREFIX: Final = "DEVORA_"
# Variables of ours that are not settings (a typo of a setting is still reported).
_PLAIN_ENV: Final = frozenset({"DEVORA_WORKSPACE", "DEVORA_CONFIG", "DEVORA_NOTEBOOKS",
                               "DEVORA_ALERT_WEBHOOK", "DEVORA_SCREENSHOT_DIR"})
_SECRET_WORDS: Final = ("api_key", "apikey", "secret", "token", "password")
_DEFAULT_KEY_ENV: Final = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventSettings(_Strict):
    """How the event log writes."""

    roll_max_events: int = Field(20_000, gt=0, description="Events per spool segment.")
    roll_max_seconds: float = Field(60.0, gt=0, description="Age at which a segment rolls.")
    fsync: bool = Field(False, description="fsync every event (survives power loss; slow).")
    content_policy: Literal["full", "hashed", "none"] = Field(
        "hashed", description="Store prompt/response text in full, as hashes, or not at all."
    )


class PricingSettings(_Strict):
    """Where prices come from beyond the shipped price book."""

    overrides: Path | None = Field(
        None, description="JSON price book (ours or LiteLLM's format) layered over the shipped "
        "one; relative paths are relative to the workspace.")


class CacheSettings(_Strict):
    """The response cache a workspace's clients use."""

    backend: Literal["none", "memory", "disk", "redis"] = Field(
        "memory", description="memory: per process; disk: shared by the machine's processes "
        "(<workspace>/cache); redis: shared across machines.")
    redis_url: str = "redis://127.0.0.1:6379/0"
    ttl_seconds: float | None = Field(None, gt=0, description="Default time to live.")
    max_bytes: int = Field(256 * 1024 * 1024, gt=0, description="Bound for memory and disk.")
    deterministic_only: bool = Field(
        True, description="Cache only requests with temperature 0 or a seed.")
    namespace: str = "default"
    semantic_threshold: float | None = Field(
        None, gt=0, le=1, description="Turn the semantic cache on at this cosine similarity "
        "(calibrate first: scripts/calibrate_semantic.py).")


class RagSettings(_Strict):
    """How documents are chunked, embedded and searched."""

    embedding_model: str = Field(
        "auto", min_length=1, description="auto (local if installed, else hashing), local "
        "(all-MiniLM-L6-v2), hashing, or an API model such as text-embedding-3-small.")
    embedding_dimensions: int | None = Field(
        None, gt=0, description="Shorter vectors from text-embedding-3 models.")
    chunk_tokens: int = Field(160, ge=16, description="Tokens per chunk (the local model "
                              "reads 256 word pieces; longer chunks would be truncated).")
    overlap_tokens: int = Field(24, ge=0, description="Tokens repeated from the chunk before.")
    ann_min_rows: int = Field(
        25_000, gt=0, description="Build the approximate (IVF_HNSW_SQ) index at this many "
        "chunks; below it, exact search is fast enough.")


class BudgetSettings(_Strict):
    """Where budget totals live: this process, or Redis for many processes and machines."""

    backend: Literal["local", "redis"] = Field(
        "local", description="local: per process (seeded from the log); redis: shared, atomic.")
    redis_url: str = "redis://127.0.0.1:6379/0"
    prefix: str = Field("devora:budget:", min_length=1, description="Redis key prefix.")


class ProviderSettings(_Strict):
    """One LLM provider endpoint. The key is named by ``api_key_env``, never stored."""

    kind: Literal["openai", "anthropic"] = "openai"
    base_url: str | None = None
    api_key_env: str | None = None


class Settings(_Strict):
    """All settings of one workspace."""

    workspace: Path
    events: EventSettings = Field(default_factory=EventSettings)
    pricing: PricingSettings = Field(default_factory=PricingSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    rag: RagSettings = Field(default_factory=RagSettings)
    budgets: BudgetSettings = Field(default_factory=BudgetSettings)
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)

    def api_key(self, provider: str, env: Mapping[str, str] | None = None) -> SecretStr | None:
        """The provider's API key from the environment, wrapped so it never prints."""
        env = os.environ if env is None else env
        configured = self.providers.get(provider)
        name = configured.api_key_env if configured and configured.api_key_env else None
        name = name or _DEFAULT_KEY_ENV.get(provider, f"{provider.upper()}_API_KEY")
        value = env.get(name)
        return SecretStr(value) if value else None


def resolve_workspace(
    workspace: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """The workspace folder: the argument, else ``DEVORA_WORKSPACE``, else the default."""
    env = os.environ if env is None else env
    chosen = workspace if workspace is not None else env.get("DEVORA_WORKSPACE") or None
    return Path(chosen if chosen is not None else DEFAULT_WORKSPACE).expanduser().resolve()


def load_settings(
    workspace: str | os.PathLike[str] | None = None,
    *,
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Settings for a workspace, from defaults, the settings file and the environment."""
    env = os.environ if env is None else env
    root = resolve_workspace(workspace, env)
    path = _find_config_file(root, config_file, env)
    values: dict[str, Any] = _read_toml(path) if path is not None else {}
    _refuse_secrets(values, str(path))
    _merge(values, _from_env(env))
    values["workspace"] = root
    source = str(path) if path is not None else "the environment"
    _check_known_keys(values, Settings, source, prefix="")
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(
            f"setting {where} from {source} is invalid: {first['msg']}",
            fix=f"correct {where} in {source}",
        ) from None


def _find_config_file(
    root: Path, explicit: str | os.PathLike[str] | None, env: Mapping[str, str]
) -> Path | None:
    named = explicit if explicit is not None else env.get("DEVORA_CONFIG") or None
    if named is not None:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"settings file {path} does not exist",
                fix="pass an existing file or unset DEVORA_CONFIG",
            )
        return path
    candidate = root / CONFIG_FILE_NAME
    return candidate if candidate.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"settings file {path} is not valid TOML: {exc}",
            fix="fix the syntax at the position shown",
        ) from None


def _refuse_secrets(values: Mapping[str, Any], source: str, prefix: str = "") -> None:
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        lowered = key.lower()
        if any(word in lowered for word in _SECRET_WORDS) and not lowered.endswith("_env"):
            raise SecretInConfigError(
                f"{source} contains the secret-looking setting {dotted}; API keys are read "
                "from the environment only",
                fix=f"remove {dotted} from {source}, export the key as an environment variable "
                "and name that variable with api_key_env",
            )
        if isinstance(value, Mapping):
            _refuse_secrets(value, source, f"{dotted}.")


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(_ENV_PREFIX) or name in _PLAIN_ENV:
            continue
        parts = name.removeprefix(_ENV_PREFIX).lower().split("__")
        if len(parts) != 2 or not all(parts):
            known = sorted(_PLAIN_ENV | set(_env_names()))
            hint = difflib.get_close_matches(name, known, n=1)
            raise ConfigError(
                f"environment variable {name} is not a devora_lab setting",
                fix=f"did you mean {hint[0]}?" if hint else "use DEVORA_<SECTION>__<KEY>",
            )
        section, key = parts
        values.setdefault(section, {})[key] = raw
    return values


def _env_names() -> list[str]:
    sections: dict[str, type[BaseModel]] = {"EVENTS": EventSettings, "PRICING": PricingSettings,
                                            "CACHE": CacheSettings}
    return [f"{_ENV_PREFIX}{section}__{key.upper()}"
            for section, model in sections.items() for key in model.model_fields]


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> None:
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _check_known_keys(
    values: Mapping[str, Any], model: type[BaseModel], source: str, prefix: str
) -> None:
    known = list(model.model_fields)
    for key, value in values.items():
        if key not in model.model_fields:
            close = difflib.get_close_matches(key, known, n=1)
            suggestion = (
                f"did you mean {prefix}{close[0]}?"
                if close
                else (f"known settings here: {', '.join(prefix + k for k in known)}")
            )
            raise ConfigError(f"unknown setting {prefix}{key} in {source}", fix=suggestion)
        annotation = model.model_fields[key].annotation
        if (
            isinstance(annotation, type)
            and issubclass(annotation, BaseModel)
            and isinstance(value, Mapping)
        ):
            _check_known_keys(value, annotation, source, f"{prefix}{key}.")
        elif key == "providers" and isinstance(value, Mapping):
            for name, provider in value.items():
                if isinstance(provider, Mapping):
                    _check_known_keys(provider, ProviderSettings, source, f"providers.{name}.")
