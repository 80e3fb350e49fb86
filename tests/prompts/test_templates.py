"""Built-ins render and declare what they use, the sandbox holds, variables are strict."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from devora_lab.prompts import PromptRegistry, RenderedPrompt, Template, TemplateError

BUILTINS = PromptRegistry().names()
SAMPLES: dict[str, Any] = {"str": "sample <text> & {{ not jinja }}", "int": 3, "float": 0.5,
                           "bool": True, "list": ["alpha", "beta"], "dict": {"k": "v"}}


def _template(content: str, variables: dict[str, str] | None = None, **kw: Any) -> Template:
    return Template(name="t", number=1, messages=({"role": "user", "content": content},),
                    variables=variables or {}, **kw)


def test_there_are_at_least_ten_builtins() -> None:
    expected = {"architecture-analysis", "component-generation", "api-route-generation",
                "database-schema-design", "code-review", "test-generation", "bug-fixing",
                "code-optimisation", "refactoring", "documentation-writing"}
    assert expected <= set(BUILTINS)


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_renders_and_declares_exactly_what_it_uses(name: str) -> None:
    template = PromptRegistry().get(name)
    env = ImmutableSandboxedEnvironment()
    used: set[str] = set()
    for message in template.messages:
        used |= meta.find_undeclared_variables(env.parse(message["content"]))
    assert used == set(template.variables)
    assert [m["role"] for m in template.messages][:2] == ["system", "user"]
    assert template.model and template.params and template.description and template.tags
    for flag in (True, False):
        values = {k: (flag if t == "bool" else SAMPLES[t]) for k, t in template.variables.items()}
        rendered = template.render(**values)
        assert isinstance(rendered, RenderedPrompt)
        assert rendered.template_name == name and rendered.template_version == template.version
        assert rendered.model == template.model and rendered.params == dict(template.params)
        for message in rendered.messages:
            assert message["content"].strip()
            assert "{{" not in message["content"].lower().replace("{{ not jinja }}", "")
        assert any(SAMPLES["str"] in m["content"] for m in rendered.messages)


def test_version_is_number_and_content_hash() -> None:
    a = _template("hi {{ x }}", {"x": "str"})
    b = a.with_number(7)
    assert a.version.startswith("1-") and len(a.version) == 10
    assert b.version == f"7-{a.content_hash[:8]}"
    assert _template("hi {{ x }}", {"x": "str"}, description="other", tags=("z",)).version \
        == a.version  # description and tags are not content
    assert _template("hi {{ x }}!", {"x": "str"}).version != a.version
    assert _template("hi {{ x }}", {"x": "str"}, model="m").version != a.version
    assert _template("hi {{ x }}", {"x": "str"}, params={"temperature": 1}).version != a.version


def test_render_fills_variables_without_escaping() -> None:
    out = _template("{{ a }}|{{ n + 1 }}|{{ xs | join(',') }}|{{ d.k }}",
                    {"a": "str", "n": "int", "xs": "list", "d": "dict"}).render(
        a="<b>&", n=1, xs=["p", "q"], d={"k": "v"})
    assert out.messages == [{"role": "user", "content": "<b>&|2|p,q|v"}]
    assert out.tags().template_version == out.template_version


def test_template_is_immutable_and_hashable() -> None:
    t = _template("x")
    with pytest.raises(AttributeError):
        t.name = "u"  # type: ignore[misc]
    with pytest.raises(TypeError):
        t.variables["y"] = "str"  # type: ignore[index]
    assert len({t, _template("x")}) == 1


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({}, "'who' is missing"),
    ({"who": "a", "extra": 1}, "'extra' is not declared"),
    ({"who": 1}, "must be str, got int"),
])
def test_strict_variable_errors_name_template_version_variable(
        kwargs: dict[str, Any], problem: str) -> None:
    t = _template("hello {{ who }}", {"who": "str"})
    with pytest.raises(TemplateError, match=problem) as info:
        t.render(**kwargs)
    assert "'t'" in str(info.value) and t.version in str(info.value)


@pytest.mark.parametrize(("type_name", "bad"), [
    ("int", True), ("float", False), ("int", 1.5), ("str", None), ("list", "ab"),
    ("dict", ["a"]), ("bool", 1),
])
def test_wrong_types_are_refused_and_bool_is_not_int(type_name: str, bad: Any) -> None:
    with pytest.raises(TemplateError, match=f"'v' must be {type_name}"):
        _template("{{ v }}", {"v": type_name}).render(v=bad)


def test_int_is_accepted_for_float() -> None:
    assert _template("{{ v }}", {"v": "float"}).render(v=2).messages[0]["content"] == "2"


def test_undeclared_variable_in_text_fails_when_built() -> None:
    with pytest.raises(TemplateError, match=r"undeclared variable.*missing_one"):
        _template("{{ ok }} {{ missing_one }}", {"ok": "str"})


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"variables": {"v": "tuple"}}, "unknown type 'tuple'"),
    ({"variables": {"1v": "str"}}, "not an identifier"),
    ({"params": {"x": object()}}, "not a JSON value"),
    ({"tags": "abc"}, "tags must be a list"),
])
def test_bad_definitions_fail_when_built(kwargs: dict[str, Any], problem: str) -> None:
    with pytest.raises(TemplateError, match=problem):
        _template("x", **kwargs)


def test_bad_messages_and_names_fail_when_built() -> None:
    with pytest.raises(TemplateError, match="role 'robot'"):
        Template(name="t", number=1, messages=({"role": "robot", "content": "x"},),
                 variables={})
    with pytest.raises(TemplateError, match="at least one message"):
        Template(name="t", number=1, messages=(), variables={})
    with pytest.raises(TemplateError, match="not allowed"):
        Template(name="../etc", number=1, messages=({"role": "user", "content": "x"},),
                 variables={})
    with pytest.raises(TemplateError, match="syntax error on line 1"):
        _template("{{ unclosed ")


HOSTILE_BUILD = [
    "{{ config }}",
    "{{ request.application }}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}",
    "{% from 'x' import y %}",
    "{% extends '/etc/passwd' %}",
]
HOSTILE_RENDER = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__.__globals__ }}",
    "{{ range.__self__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ dict.__base__.__subclasses__() }}",
    "{{ ''|attr('__class__') }}",
    "{{ '{0.__class__}'.format('') }}",
    "{{ x.__class__.__init__.__globals__['sys'] }}",
    "{{ x.upper.__self__ }}",
    "{% set l = [] %}{{ l.append(1) }}",
    "{{ 'a' * 1000000000 }}",
    "{{ 2 ** 100000000 }}",
    "{% for i in range(10**9) %}{% endfor %}",
]


@pytest.mark.parametrize("source", HOSTILE_BUILD + HOSTILE_RENDER)
def test_hostile_templates_raise_template_error_and_never_leak(source: str) -> None:
    with pytest.raises(TemplateError) as info:
        _template(source, {"x": "str"}).render(x="s")
    text = str(info.value)
    for leak in ("root:", "<module", "<class 'os", "builtins", "Popen", "__import__",
                 "/usr/lib", "site-packages"):
        assert leak not in text


def test_compiled_templates_are_cached() -> None:
    from devora_lab.prompts.templates import _parse

    before = _parse.cache_info().hits
    _template("cached {{ v }}", {"v": "str"}).render(v="a")
    _template("cached {{ v }}", {"v": "str"}).render(v="b")
    assert _parse.cache_info().hits > before
