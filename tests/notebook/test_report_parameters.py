"""``-p key=value`` parsing: values typed exactly as papermill's own CLI types them."""

from __future__ import annotations

import keyword
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from papermill.cli import _resolve_type  # the oracle: papermill keeps it private

from devora_lab.errors import ConfigError
from devora_lab.notebook.report import parse_parameter, parse_parameters, parse_value

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True).filter(
    lambda n: not keyword.iskeyword(n))


@given(st.text())
def test_values_are_typed_like_papermills_cli(text: str) -> None:
    ours, theirs = parse_value(text), _resolve_type(text)
    assert type(ours) is type(theirs)
    if isinstance(ours, float) and math.isnan(ours):
        assert math.isnan(theirs)
    else:
        assert ours == theirs


@given(st.integers())
def test_integers_round_trip(value: int) -> None:
    parsed = parse_value(str(value))
    assert type(parsed) is int and parsed == value


@given(st.floats(allow_nan=False))
def test_floats_round_trip(value: float) -> None:
    parsed = parse_value(repr(value))
    assert type(parsed) is float and parsed == value


@given(st.text().filter(lambda t: t not in ("True", "False", "None")))
def test_text_that_is_not_a_number_stays_the_same_string(text: str) -> None:
    try:
        float(text)
    except ValueError:
        assert parse_value(text) == text


def test_keywords_become_bool_and_none() -> None:
    assert parse_value("True") is True and parse_value("False") is False
    assert parse_value("None") is None
    assert parse_value("true") == "true"  # only papermill's exact spellings


@given(names, st.text())
def test_key_value_splits_at_the_first_equals(name: str, value: str) -> None:
    key, parsed = parse_parameter(f"{name}={value}")
    assert key == name
    assert type(parsed) is type(parse_value(value))


@pytest.mark.parametrize("item", ["days", "=3", "1days=3", "class=1", "my-key=2", " =x"])
def test_malformed_parameters_are_refused(item: str) -> None:
    with pytest.raises(ConfigError, match="key=value"):
        parse_parameter(item)


def test_later_keys_override_earlier_ones() -> None:
    assert parse_parameters(["days=7", "model=gpt-4o", "days=3.5", "q=a=b"]) == {
        "days": 3.5, "model": "gpt-4o", "q": "a=b"}
