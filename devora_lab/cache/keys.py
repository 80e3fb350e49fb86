"""Cache keys: one SHA-256 digest of everything in a request that can change the answer.

Two requests get the same key exactly when a provider would see the same request, up to
differences that cannot change the answer. So the canonical form normalises what JSON does
not distinguish (dict key order, ``1`` and ``1.0``, a ``None`` field and a missing one,
``stop="x"`` and ``stop=["x"]``, ``max_tokens`` and ``max_completion_tokens``) and leaves
out fields that only steer transport or bookkeeping (``stream``, ``user``, ``timeout``...).
Anything else is kept: an unknown field is *included*, because a false miss costs one
provider call while a false hit returns the answer to a different question.

The canonical form is versioned (``_FORMAT``), so changing it never revives old entries
under a new meaning. This module also holds the small rules every backend shares: valid
namespaces, the namespace of a key, and time-to-live checks.
"""

from __future__ import annotations

import enum
import hashlib
import math
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import orjson

from devora_lab.errors import ConfigError

if TYPE_CHECKING:
    from devora_lab.llm.types import MessageLike

__all__ = [
    "IGNORED_FIELDS",
    "KNOWN_FIELDS",
    "CacheKey",
    "cache_key",
    "check_namespace",
    "explain_key",
    "is_deterministic",
    "namespace_of",
]

_FORMAT: Final = 1
"""Version of the canonical form; bump it whenever the normalisation changes."""

KNOWN_FIELDS: Final = frozenset({
    "tools", "tool_choice", "response_format", "temperature", "top_p", "top_k",
    "max_tokens", "max_completion_tokens", "stop", "seed", "n", "presence_penalty",
    "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "parallel_tool_calls",
    "reasoning_effort", "thinking", "system", "functions", "function_call", "modalities",
    "audio", "prediction", "verbosity", "web_search_options",
})
"""Request fields known to change the answer; they are part of the key."""

IGNORED_FIELDS: Final = frozenset({
    "stream", "stream_options", "user", "metadata", "timeout", "service_tier", "store",
})
"""Request fields that cannot change the answer (plus any field starting with ``x_``)."""

_IGNORED_PREFIX: Final = "x_"
_MAX_TOKENS_ALIAS: Final = "max_completion_tokens"
_EXACT_INT_LIMIT: Final = 2**53
_NAMESPACE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,127}")


@dataclass(frozen=True, slots=True)
class CacheKey:
    """A request's cache key: ``full`` is what backends store it under."""

    namespace: str
    digest: str
    included: tuple[str, ...]
    ignored: tuple[str, ...]

    @property
    def full(self) -> str:
        """``<namespace>:<digest>``, the string every backend is given."""
        return f"{self.namespace}:{self.digest}"

    def __str__(self) -> str:
        return self.full


def cache_key(provider: str, model: str, messages: Sequence[MessageLike],
              params: Mapping[str, Any], *, namespace: str = "default") -> CacheKey:
    """The key of one chat request: a digest of its canonical JSON form.

    Raises ``ConfigError`` for a bad namespace and for values that have no JSON form
    (sets, bytes, NaN...), since such a request cannot be sent as JSON either.
    """
    check_namespace(namespace)
    canonical, included, ignored = _canonical_params(params)
    document = {"v": _FORMAT, "provider": provider, "model": model,
                "messages": _canonical(list(messages)), "params": canonical}
    try:
        encoded = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise ConfigError(f"the request cannot be cached: {exc}",
                          fix="pass only JSON values (dicts, lists, str, numbers, bools)"
                          ) from exc
    return CacheKey(namespace, hashlib.sha256(encoded).hexdigest(), included, ignored)


def explain_key(provider: str, model: str, messages: Sequence[MessageLike],
                params: Mapping[str, Any], *, namespace: str = "default") -> str:
    """A report of what the key of this request is made of, for a human deciding why two
    requests did or did not share a cache entry."""
    key = cache_key(provider, model, messages, params, namespace=namespace)
    unknown = [name for name in key.included if name not in KNOWN_FIELDS]
    known = [name for name in key.included if name in KNOWN_FIELDS]
    lines = [
        f"cache key {key.full}",
        f"  made of: provider {provider!r}, model {model!r}, {len(messages)} message(s)",
        f"  included (can change the answer): {_names(known)}",
    ]
    if unknown:
        lines.append(f"  included although unknown (kept to be safe): {_names(unknown)}")
    lines.append(f"  ignored (cannot change the answer): {_names(key.ignored)}")
    if _MAX_TOKENS_ALIAS in params and "max_tokens" not in params:
        lines.append("  max_completion_tokens is keyed as max_tokens (the same limit)")
    lines.append(f"  deterministic: {_determinism(params)}")
    return "\n".join(lines)


def is_deterministic(params: Mapping[str, Any]) -> bool:
    """Whether a repeat of the request should give the same answer, so a cached answer
    stands for it: temperature 0, or a seed. A missing temperature means the provider's
    default (1.0), which samples."""
    if params.get("seed") is not None:
        return True
    temperature = params.get("temperature")
    return isinstance(temperature, int | float) and not isinstance(temperature, bool) \
        and temperature == 0


# -- rules every backend shares ----------------------------------------------------------


def check_namespace(namespace: str) -> str:
    """``namespace`` if valid, else ``ConfigError``.

    A namespace is the part of a key before the first ``:``, so it cannot contain one;
    letters, digits and ``_ . - /`` only, so that it is a safe SQL range bound and a safe
    Redis ``SCAN MATCH`` pattern.
    """
    if not isinstance(namespace, str) or _NAMESPACE.fullmatch(namespace) is None:
        raise ConfigError(f"invalid cache namespace {namespace!r}",
                          fix="use 1-128 letters, digits, '_', '.', '-' or '/', starting "
                              "with a letter or digit")
    return namespace


def namespace_of(key: str) -> str:
    """The namespace of a full key (``ns:digest`` → ``ns``); the whole key if it has none."""
    return key.partition(":")[0]


def check_ttl(ttl: float | None, name: str = "ttl") -> float | None:
    """``ttl`` if None or a positive finite number of seconds, else ``ConfigError``.

    Zero and negative values are refused rather than read as "already expired", because
    they are almost always a unit mistake.
    """
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl) \
            or ttl <= 0:
        raise ConfigError(f"{name} must be a positive number of seconds or None, not {ttl!r}")
    return float(ttl)


def check_max_bytes(max_bytes: int) -> int:
    """``max_bytes`` if a positive int, else ``ConfigError``."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise ConfigError(f"max_bytes must be a positive int, not {max_bytes!r}")
    return max_bytes


def check_value(value: bytes) -> bytes:
    """``value`` as bytes; anything but bytes is refused, so no backend ever pickles."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"cache values are bytes (JSON documents), not {type(value).__name__}")


# -- canonical form ------------------------------------------------------------------------


def _canonical_params(params: Mapping[str, Any]
                      ) -> tuple[dict[str, Any], tuple[str, ...], tuple[str, ...]]:
    """The fields of ``params`` that enter the key, normalised; and the names kept and
    left out. ``None`` values are absent values, so they are in neither list."""
    canonical: dict[str, Any] = {}
    ignored: list[str] = []
    for name, value in params.items():
        if value is None:
            continue
        if name in IGNORED_FIELDS or name.startswith(_IGNORED_PREFIX):
            ignored.append(name)
        elif name == "stop":
            stops = [value] if isinstance(value, str) else _canonical(value)
            if stops:  # an empty list of stop sequences is no stop sequence
                canonical["stop"] = stops
        else:
            canonical[name] = _canonical(value)
    _merge_max_tokens(canonical)
    return canonical, tuple(sorted(canonical)), tuple(sorted(ignored))


def _merge_max_tokens(canonical: dict[str, Any]) -> None:
    """Key ``max_completion_tokens`` as ``max_tokens`` (OpenAI's newer name for the same
    limit); both are kept only when both are given and differ."""
    if _MAX_TOKENS_ALIAS not in canonical:
        return
    if canonical.get("max_tokens", canonical[_MAX_TOKENS_ALIAS]) == canonical[_MAX_TOKENS_ALIAS]:
        canonical["max_tokens"] = canonical.pop(_MAX_TOKENS_ALIAS)


def _canonical(value: Any) -> Any:
    """``value`` as plain JSON data: mappings without ``None`` values, lists in order,
    integral floats as ints. The common types are dispatched first, since this runs on
    every lookup."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict or isinstance(value, Mapping):
        return {key if type(key) is str else _canonical_dict_key(key): _canonical(item)
                for key, item in value.items() if item is not None}
    if kind is list or kind is tuple:
        return [_canonical(item) for item in value]
    if kind is float:
        return _canonical_float(value)
    return _canonical_other(value)


def _canonical_float(value: float) -> float | int:
    if not math.isfinite(value):
        raise ConfigError(f"the request cannot be cached: {value!r} has no JSON form",
                          fix="use finite numbers")
    if value.is_integer() and abs(value) < _EXACT_INT_LIMIT:
        return int(value)  # JSON has one number type: 1 and 1.0 are the same request
    return value


def _canonical_dict_key(key: Any) -> str:
    """JSON object keys are strings: ``{123: -100}`` is sent as ``{"123": -100}``."""
    if isinstance(key, enum.Enum):
        key = key.value
    if isinstance(key, bool) or not isinstance(key, str | int):
        raise ConfigError(f"the request cannot be cached: the dict key {key!r} has no JSON "
                          "form", fix="use str or int keys")
    return str.__str__(key) if isinstance(key, str) else str(int(key))


_PLAIN: Final[tuple[tuple[type, Callable[[Any], Any]], ...]] = (
    (bool, bool), (str, str.__str__), (numbers.Integral, int), (numbers.Real, float),
    (list, list), (tuple, list))
"""Subclasses of the JSON types (and numpy's numbers), and the plain type each is keyed as."""


def _canonical_other(value: Any) -> Any:
    """Subclasses of the JSON types, enums and pydantic models; ``ConfigError`` otherwise."""
    if isinstance(value, enum.Enum):
        return _canonical(value.value)
    for base, convert in _PLAIN:
        if isinstance(value, base):
            return _canonical(convert(value))
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # a pydantic model, e.g. a message object from an SDK
        return _canonical(dump(exclude_none=True))
    raise ConfigError(f"the request cannot be cached: a {type(value).__name__} has no JSON "
                      "form", fix="pass only JSON values (dicts, lists, str, numbers, bools)")


def _names(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "(none)"


def _determinism(params: Mapping[str, Any]) -> str:
    if params.get("seed") is not None:
        return f"yes (seed {params['seed']!r})"
    if "temperature" not in params or params["temperature"] is None:
        return "no (no temperature: the provider default, usually 1.0, samples)"
    if is_deterministic(params):
        return "yes (temperature 0)"
    return f"no (temperature {params['temperature']!r} samples)"
