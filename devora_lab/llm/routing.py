"""Which provider serves a model, at which URL, with which key.

``provider/model`` picks a provider explicitly (``openrouter/meta-llama/llama-3-70b``);
otherwise the model's name decides (``claude-*`` → anthropic, ``gpt-*``/``o1``… → openai).
Base URLs come from settings, then the SDKs' own environment variables (``OPENAI_BASE_URL``,
``ANTHROPIC_BASE_URL``), then the public endpoints. Keys come from the environment only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from devora_lab.config import ProviderSettings, Settings
from devora_lab.errors import ModelRoutingError
from devora_lab.llm.providers.anthropic import AnthropicAdapter
from devora_lab.llm.providers.base import ProviderAdapter
from devora_lab.llm.providers.openai import OpenAIAdapter

__all__ = ["ProviderConfig", "Route", "Router"]

_BUILT_IN: Final = {
    "openai": ("openai", "https://api.openai.com/v1", "OPENAI_BASE_URL", "OPENAI_API_KEY"),
    "anthropic": ("anthropic", "https://api.anthropic.com", "ANTHROPIC_BASE_URL",
                  "ANTHROPIC_API_KEY"),
    "openrouter": ("openai", "https://openrouter.ai/api/v1", "OPENROUTER_BASE_URL",
                   "OPENROUTER_API_KEY"),
}
_BY_PREFIX: Final = (
    ("claude", "anthropic"),
    ("gpt-", "openai"),
    ("chatgpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("text-embedding-", "openai"),
)


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """A provider endpoint: wire format, URL, and the environment variable of its key."""

    kind: str
    base_url: str
    api_key_env: str | None = None
    headers: Mapping[str, str] | None = None  # e.g. OpenRouter's HTTP-Referer and X-Title


@dataclass(frozen=True, slots=True)
class Route:
    """Where one model goes: the adapter and the model name the provider expects."""

    adapter: ProviderAdapter
    model: str

    @property
    def deployment(self) -> str:
        """Key of this provider+model pair for cooldowns."""
        return f"{self.adapter.name}/{self.model}"


class Router:
    """Resolves model names to routes; adapters are built once per provider."""

    def __init__(self, providers: Mapping[str, ProviderConfig] | None = None, *,
                 settings: Settings | None = None,
                 env: Mapping[str, str] | None = None,
                 default_provider: str | None = None) -> None:
        self._env = os.environ if env is None else env
        self._configs = _defaults(self._env)
        if settings is not None:
            self._configs.update({name: _from_settings(name, p, self._configs.get(name))
                                  for name, p in settings.providers.items()})
        self._configs.update(providers or {})
        self.default_provider = default_provider
        self._adapters: dict[str, ProviderAdapter] = {}

    @property
    def providers(self) -> dict[str, ProviderConfig]:
        return dict(self._configs)

    def resolve(self, model: str) -> Route:
        name, bare = self._split(model)
        return Route(self.adapter(name), bare)

    def adapter(self, name: str) -> ProviderAdapter:
        if name not in self._adapters:
            config = self._configs[name]
            key = self._env.get(config.api_key_env) if config.api_key_env else None
            kind = AnthropicAdapter if config.kind == "anthropic" else OpenAIAdapter
            self._adapters[name] = kind(name, config.base_url, key, config.headers)
        return self._adapters[name]

    def secrets(self) -> list[str]:
        """Every key this router may send, for redaction."""
        return [self._env[c.api_key_env] for c in self._configs.values()
                if c.api_key_env and self._env.get(c.api_key_env)]

    def _split(self, model: str) -> tuple[str, str]:
        head, sep, rest = model.partition("/")
        if sep and head in self._configs:
            return head, rest
        lowered = model.lower()
        for prefix, provider in _BY_PREFIX:
            if lowered.startswith(prefix) and provider in self._configs:
                return provider, model
        if self.default_provider is not None:
            return self.default_provider, model
        raise ModelRoutingError(
            f"no provider is configured for model {model!r}",
            fix="prefix it with a provider (openai/…, anthropic/…, openrouter/…) or add "
            "[providers.<name>] with a base_url to devora.toml and use <name>/" + model,
        )


def _defaults(env: Mapping[str, str]) -> dict[str, ProviderConfig]:
    return {name: ProviderConfig(kind, env.get(url_env) or url, key_env)
            for name, (kind, url, url_env, key_env) in _BUILT_IN.items()}


def _from_settings(name: str, settings: ProviderSettings,
                   base: ProviderConfig | None) -> ProviderConfig:
    base_url = settings.base_url or (base.base_url if base else None)
    if base_url is None:
        raise ModelRoutingError(f"provider {name} has no base_url",
                                fix=f"set base_url under [providers.{name}] in devora.toml")
    key_env = settings.api_key_env or (base.api_key_env if base else None) or (
        f"{name.upper()}_API_KEY")
    return ProviderConfig(settings.kind, base_url, key_env)
