"""Cache keys: the same for requests a provider cannot tell apart, different otherwise."""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from devora_lab.cache.keys import (
    IGNORED_FIELDS,
    KNOWN_FIELDS,
    CacheKey,
    cache_key,
    check_namespace,
    explain_key,
    is_deterministic,
    namespace_of,
)
from devora_lab.errors import ConfigError

MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function",
         "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"celsius": 21}'},
]
TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]

# Every field known to change the answer, with two values that differ.
VARIANTS: dict[str, tuple[Any, Any]] = {
    "tools": (TOOLS, [{"type": "function", "function": {"name": "time"}}]),
    "tool_choice": ("auto", {"type": "function", "function": {"name": "weather"}}),
    "response_format": ({"type": "json_object"}, {"type": "text"}),
    "temperature": (0, 0.7),
    "top_p": (1, 0.9),
    "top_k": (40, 1),
    "max_tokens": (100, 200),
    "max_completion_tokens": (100, 300),
    "stop": (["END"], ["STOP", "END"]),
    "seed": (1, 2),
    "n": (1, 2),
    "presence_penalty": (0, 0.5),
    "frequency_penalty": (0, 0.5),
    "logit_bias": ({"50256": -100}, {"50256": 100}),
    "logprobs": (True, False),
    "top_logprobs": (1, 5),
    "parallel_tool_calls": (True, False),
    "reasoning_effort": ("low", "high"),
    "thinking": ({"type": "enabled", "budget_tokens": 1024},
                 {"type": "enabled", "budget_tokens": 2048}),
    "system": ("Be terse.", "Be verbose."),
    "functions": ([{"name": "a"}], [{"name": "b"}]),
    "function_call": ("auto", "none"),
    "modalities": (["text"], ["text", "audio"]),
    "audio": ({"voice": "alloy"}, {"voice": "echo"}),
    "prediction": ({"type": "content", "content": "a"}, {"type": "content", "content": "b"}),
    "verbosity": ("low", "high"),
    "web_search_options": ({}, {"search_context_size": "high"}),
}

json_scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8) \
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)


def key(messages: Any = MESSAGES, params: Mapping[str, Any] | None = None, *,
        provider: str = "openai", model: str = "gpt-4o", namespace: str = "default") -> str:
    return cache_key(provider, model, messages, params or {}, namespace=namespace).full


def shuffled(value: Any, rng: random.Random) -> Any:
    """``value`` with the keys of every dict, at every depth, in a random order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [shuffled(item, rng) for item in value]
    return value


def with_nones(value: Any, rng: random.Random) -> Any:
    """``value`` with ``None``-valued fields added to some dicts, at every depth."""
    if isinstance(value, dict):
        out = {k: with_nones(v, rng) for k, v in value.items()}
        if rng.random() < 0.5:
            out[f"extra_{rng.randrange(100)}"] = None
        return out
    if isinstance(value, list):
        return [with_nones(item, rng) for item in value]
    return value


# -- invariance ----------------------------------------------------------------------------


@given(json_values, st.randoms(use_true_random=False))
def test_dict_key_order_never_changes_the_key(value: Any, rng: random.Random) -> None:
    params = {"response_format": value, "temperature": 0}
    messages = [*MESSAGES, {"role": "user", "content": [{"type": "text", "text": "hi",
                                                        "extra": value}]}]
    assert key(messages, params) == key(shuffled(messages, rng), shuffled(params, rng))


@given(json_values, st.randoms(use_true_random=False))
def test_none_fields_are_absent_fields(value: Any, rng: random.Random) -> None:
    params = {"tools": TOOLS, "metadata_like": value, "temperature": 0}
    noisy = with_nones(params, rng)
    noisy["seed"] = None
    assert key(MESSAGES, params) == key(with_nones(MESSAGES, rng), noisy)


@given(st.text(min_size=1, max_size=20))
def test_a_stop_string_is_a_one_item_list(stop: str) -> None:
    assert key(params={"stop": stop}) == key(params={"stop": [stop]})
    assert key(params={"stop": (stop,)}) == key(params={"stop": [stop]})


def test_an_empty_stop_list_is_no_stop() -> None:
    assert key(params={"stop": []}) == key(params={}) == key(params={"stop": None})


@given(st.integers(1, 100_000))
def test_max_completion_tokens_is_max_tokens(limit: int) -> None:
    assert key(params={"max_tokens": limit}) == key(params={"max_completion_tokens": limit})
    assert key(params={"max_tokens": limit}) == key(
        params={"max_tokens": limit, "max_completion_tokens": limit})


def test_conflicting_max_tokens_are_both_keyed() -> None:
    both = key(params={"max_tokens": 10, "max_completion_tokens": 20})
    assert both not in {key(params={"max_tokens": 10}), key(params={"max_tokens": 20})}


@given(st.integers(-1000, 1000))
def test_integral_floats_are_ints(number: int) -> None:
    assert key(params={"temperature": number}) == key(params={"temperature": float(number)})


@given(st.sampled_from(sorted(IGNORED_FIELDS)) | st.from_regex(r"x_[a-z_]{1,10}", fullmatch=True),
       json_values)
def test_ignored_fields_never_change_the_key(name: str, value: Any) -> None:
    assume(value is not None)
    with_field = cache_key("openai", "gpt-4o", MESSAGES, {"temperature": 0, name: value})
    assert with_field.digest == cache_key("openai", "gpt-4o", MESSAGES, {"temperature": 0}).digest
    assert with_field.ignored == (name,)
    assert name not in with_field.included


def test_tuples_enums_and_int_dict_keys_are_their_json_forms() -> None:
    class Effort(enum.StrEnum):
        LOW = "low"

    plain = {"logit_bias": {"50256": -100}, "stop": ["a", "b"], "reasoning_effort": "low"}
    fancy = {"logit_bias": {50256: -100}, "stop": ("a", "b"), "reasoning_effort": Effort.LOW}
    assert key(params=plain) == key(params=fancy)


# -- sensitivity ---------------------------------------------------------------------------


def test_every_known_field_has_a_variant() -> None:
    assert set(VARIANTS) == KNOWN_FIELDS


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(VARIANTS)), st.sampled_from(sorted(VARIANTS)))
def test_every_included_field_changes_the_key(name: str, other: str) -> None:
    aliases = {name, other} == {"max_tokens", "max_completion_tokens"}  # one field, two names
    base = {other: VARIANTS[other][0]} if other != name and not aliases else {}
    first, second = VARIANTS[name]
    keys = {key(params={**base, name: first}), key(params={**base, name: second}),
            key(params=base)}
    assert len(keys) == 3


@given(st.text(min_size=1, max_size=10).filter(
    lambda s: s not in IGNORED_FIELDS and not s.startswith("x_")), json_values)
def test_unknown_fields_are_included_and_listed(name: str, value: Any) -> None:
    assume(value is not None and name != "stop")
    made = cache_key("openai", "gpt-4o", MESSAGES, {name: value})
    assert made.included == ("max_tokens" if name == "max_completion_tokens" else name,)
    assert made.digest != cache_key("openai", "gpt-4o", MESSAGES, {}).digest


@pytest.mark.parametrize("change", [
    lambda m: m[1].update(content="What is the weather in Rome?"),
    lambda m: m[1].update(role="system"),
    lambda m: m[1].update(name="alice"),
    lambda m: m.reverse(),
    lambda m: m.pop(),
    lambda m: m[2]["tool_calls"][0]["function"].update(arguments='{"city": "Rome"}'),
    lambda m: m[2]["tool_calls"][0].update(id="call_2"),
    lambda m: m[3].update(content='{"celsius": 22}'),
    lambda m: m[3].update(tool_call_id="call_2"),
    lambda m: m[1].update(content=[{"type": "text", "text": "What is the weather in Paris?"}]),
])
def test_every_part_of_the_messages_changes_the_key(change: Any) -> None:
    import copy

    changed = copy.deepcopy(MESSAGES)
    change(changed)
    assert key(changed) != key(MESSAGES)


def test_provider_model_and_namespace_change_the_key() -> None:
    base = key()
    assert key(provider="anthropic") != base
    assert key(model="gpt-4o-mini") != base
    other = cache_key("openai", "gpt-4o", MESSAGES, {}, namespace="exp-1")
    assert other.full != base and other.full.startswith("exp-1:")
    assert other.digest == base.split(":", 1)[1]  # the digest is the request's alone


# -- the key object, the report, determinism -----------------------------------------------


def test_the_key_object() -> None:
    made = cache_key("openai", "gpt-4o", MESSAGES,
                     {"temperature": 0, "stream": True, "foo": 1, "user": "u"}, namespace="n")
    assert isinstance(made, CacheKey)
    assert len(made.digest) == 64 and int(made.digest, 16) >= 0
    assert made.full == f"n:{made.digest}" == str(made)
    assert made.included == ("foo", "temperature")
    assert made.ignored == ("stream", "user")
    assert namespace_of(made.full) == "n"
    with pytest.raises(AttributeError):
        made.digest = "x"  # type: ignore[misc]


def test_explain_key_lists_what_is_included_and_ignored() -> None:
    report = explain_key("openai", "gpt-4o", MESSAGES,
                         {"temperature": 0, "max_completion_tokens": 5, "stream": True,
                          "x_trace": "t", "mystery": 1})
    assert "included (can change the answer): max_tokens, temperature" in report
    assert "included although unknown (kept to be safe): mystery" in report
    assert "ignored (cannot change the answer): stream, x_trace" in report
    assert "max_completion_tokens is keyed as max_tokens" in report
    assert "deterministic: yes (temperature 0)" in report
    assert "deterministic: no (no temperature" in explain_key("openai", "m", MESSAGES, {})


@pytest.mark.parametrize(("params", "expected"), [
    ({"temperature": 0}, True),
    ({"temperature": 0.0}, True),
    ({"seed": 7, "temperature": 1.2}, True),
    ({"seed": 0}, True),
    ({}, False),
    ({"temperature": None}, False),
    ({"temperature": 0.2}, False),
    ({"temperature": False}, False),
    ({"seed": None, "temperature": 1}, False),
])
def test_is_deterministic(params: dict[str, Any], expected: bool) -> None:
    assert is_deterministic(params) is expected


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [{1, 2}, b"bytes", object(), math.nan, math.inf,
                                   {(1, 2): "tuple key"}])
def test_values_without_a_json_form_are_refused(value: Any) -> None:
    with pytest.raises(ConfigError, match="cannot be cached"):
        cache_key("openai", "gpt-4o", MESSAGES, {"response_format": value})


@pytest.mark.parametrize("namespace", ["", "a:b", "a*", "with space", "-lead", "x" * 129, 5])
def test_bad_namespaces_are_refused(namespace: Any) -> None:
    with pytest.raises(ConfigError, match="namespace"):
        cache_key("openai", "gpt-4o", MESSAGES, {}, namespace=namespace)


def test_good_namespaces() -> None:
    for namespace in ("default", "exp-42", "agent/planner", "v1.2_x"):
        assert check_namespace(namespace) == namespace
