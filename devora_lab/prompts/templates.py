"""One prompt template: versioned, content-hashed, rendered in a Jinja2 sandbox.

A template's text may come from anyone who can write to the workspace or hand us an
export file, so it is treated as untrusted code: it renders in an
``ImmutableSandboxedEnvironment`` without a loader (no ``include``/``import``/``extends``),
with underscore attributes blocked, huge repetitions refused, and only ``range``, ``dict``
and ``namespace`` as globals. Variables are strict in both directions: every variable the
text uses must be declared with a type, every declared variable must be passed, and nothing
undeclared may be passed; each mistake is a ``TemplateError`` naming the template, its
version and the variable, because a silently empty variable is a silently wrong prompt.

``version`` is ``"<number>-<hash8>"``: the number orders versions for people, the hash of
the content (messages, variables, model, params) lets two machines agree on what was sent.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import jinja2
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from devora_lab.errors import ConfigError

if TYPE_CHECKING:
    from devora_lab.llm.driver import Tags

__all__ = [
    "MESSAGE_ROLES",
    "VARIABLE_TYPES",
    "RenderedPrompt",
    "Template",
    "TemplateError",
    "template_from_dict",
]

#: Declared type name -> the Python types a value of that type may have.
VARIABLE_TYPES: Final[Mapping[str, tuple[type, ...]]] = MappingProxyType({
    "str": (str,),
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "list": (list, tuple),
    "dict": (dict, Mapping),
})
MESSAGE_ROLES: Final = frozenset({"system", "user", "assistant"})

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_VARIABLE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_MAX_REPEAT = 100_000  # longest string/list a template may build with ``*``
_MAX_EXPONENT = 64
_FIELDS: Final = ("name", "number", "version", "description", "tags", "model", "params",
                  "variables", "messages")
_REQUIRED: Final = ("name", "messages", "variables")


class TemplateError(ConfigError):
    """A template is malformed, unsafe, or was rendered with the wrong variables."""


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, also refusing ``'x' * 10**9`` and ``9 ** 9 ** 9``."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any,
                   right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > _MAX_EXPONENT:
                raise SecurityError(f"exponent {right} is too large")
            return left**right
        for seq, times in ((left, right), (right, left)):
            if (isinstance(seq, str | list | tuple) and isinstance(times, int)
                    and len(seq) * times > _MAX_REPEAT):
                raise SecurityError(
                    f"repetition would build {len(seq) * times:,} items (limit {_MAX_REPEAT:,})")
        return left * right


def _make_env() -> _Sandbox:
    env = _Sandbox(
        loader=None,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    # lipsum, cycler and joiner are Python functions whose internals are a common escape
    # route; the sandbox blocks them today, but a template has no need for them at all.
    env.globals = {name: env.globals[name] for name in ("range", "dict", "namespace")}
    return env


_ENV: Final = _make_env()
_FORBIDDEN_NODES: Final = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)


@functools.lru_cache(maxsize=1024)
def _parse(source: str) -> tuple[jinja2.Template | None, frozenset[str], str | None]:
    """Compile ``source`` once: (compiled, variables used, error or None)."""
    try:
        ast = _ENV.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        return None, frozenset(), f"syntax error on line {exc.lineno}: {exc.message}"
    for node in ast.find_all(_FORBIDDEN_NODES):
        kind = type(node).__name__.lower().replace("fromimport", "import")
        return None, frozenset(), (f"'{{% {kind} %}}' on line {node.lineno} is not allowed "
                                   "(templates cannot read other templates or files)")
    used = frozenset(meta.find_undeclared_variables(ast))
    return _ENV.from_string(ast), used, None


@dataclass(frozen=True)
class RenderedPrompt:
    """Messages ready to send, with the model and params and where they came from."""

    messages: list[dict[str, str]]
    model: str | None
    params: dict[str, Any]
    template_name: str
    template_version: str

    def tags(self) -> Tags:
        """``Tags`` carrying the template name and version, for the call's events."""
        from devora_lab.llm.driver import Tags

        return Tags(template_name=self.template_name, template_version=self.template_version)


def _check_json(value: Any, where: str) -> None:
    if value is None or isinstance(value, str | bool | int | float):
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TemplateError(f"{where}: key {key!r} is not a string")
            _check_json(item, f"{where}.{key}")
        return
    raise TemplateError(f"{where}: {type(value).__name__} is not a JSON value",
                        fix="use strings, numbers, booleans, null, lists and mappings")


def _json_copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


@dataclass(frozen=True)
class Template:
    """One immutable version of a prompt template.

    Built from plain data and checked at once (names, roles, variable types, Jinja syntax,
    every used variable declared), so that a bad template fails where it is defined rather
    than at the first call.
    """

    name: str
    number: int
    messages: tuple[dict[str, str], ...]
    variables: Mapping[str, str] = field(default_factory=dict)
    model: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = f"template {self.name!r}"
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise TemplateError(
                f"template name {self.name!r} is not allowed",
                fix="use 1-64 lower-case letters, digits, '.', '_' or '-', starting with a "
                    "letter or digit")
        if isinstance(self.number, bool) or not isinstance(self.number, int) or self.number < 1:
            raise TemplateError(f"{where}: version number {self.number!r} must be an int >= 1")
        if self.model is not None and not isinstance(self.model, str):
            raise TemplateError(f"{where}: model must be a string or null")
        if not isinstance(self.description, str):
            raise TemplateError(f"{where}: description must be a string")
        if isinstance(self.tags, str) or not all(isinstance(t, str) for t in self.tags):
            raise TemplateError(f"{where}: tags must be a list of strings")
        if not isinstance(self.params, Mapping):
            raise TemplateError(f"{where}: params must be a mapping")
        _check_json(self.params, f"{where}: params")
        variables = self._checked_variables(where)
        messages = self._checked_messages(where)
        used: set[str] = set()
        for i, message in enumerate(messages):
            compiled, names, error = _parse(message["content"])
            if compiled is None:
                raise TemplateError(f"{where}: messages[{i}]: {error}")
            used |= names
        undeclared = sorted(used - variables.keys())
        if undeclared:
            raise TemplateError(
                f"{where}: the text uses undeclared variable(s) {', '.join(undeclared)}",
                fix="declare each under 'variables' with its type, e.g. "
                    f"{undeclared[0]}: str")
        object.__setattr__(self, "messages", messages)
        object.__setattr__(self, "variables", MappingProxyType(variables))
        object.__setattr__(self, "params", MappingProxyType(_json_copy(dict(self.params))))
        object.__setattr__(self, "tags", tuple(self.tags))

    def _checked_variables(self, where: str) -> dict[str, str]:
        if not isinstance(self.variables, Mapping):
            raise TemplateError(f"{where}: variables must be a mapping of name to type")
        checked: dict[str, str] = {}
        for name, type_name in self.variables.items():
            if not isinstance(name, str) or not _VARIABLE.match(name):
                raise TemplateError(f"{where}: variable name {name!r} is not an identifier")
            if type_name not in VARIABLE_TYPES:
                raise TemplateError(
                    f"{where}: variable {name!r} has unknown type {type_name!r}",
                    fix=f"use one of {', '.join(VARIABLE_TYPES)}")
            checked[name] = type_name
        return checked

    def _checked_messages(self, where: str) -> tuple[dict[str, str], ...]:
        if isinstance(self.messages, str | Mapping) or not isinstance(self.messages, Iterable):
            raise TemplateError(f"{where}: messages must be a list of {{role, content}}")
        checked: list[dict[str, str]] = []
        for i, message in enumerate(self.messages):
            if not isinstance(message, Mapping) or set(message) != {"role", "content"}:
                raise TemplateError(
                    f"{where}: messages[{i}] must have exactly the keys 'role' and 'content'")
            role, content = message["role"], message["content"]
            if role not in MESSAGE_ROLES:
                raise TemplateError(f"{where}: messages[{i}]: role {role!r} is not one of "
                                    f"{', '.join(sorted(MESSAGE_ROLES))}")
            if not isinstance(content, str):
                raise TemplateError(f"{where}: messages[{i}]: content must be a string")
            checked.append({"role": role, "content": content})
        if not checked:
            raise TemplateError(f"{where}: a template needs at least one message")
        return tuple(checked)

    def __hash__(self) -> int:
        return hash((self.name, self.version))

    def content(self) -> dict[str, Any]:
        """What the hash covers: messages, variables, model and params, as plain data."""
        return {
            "messages": [dict(m) for m in self.messages],
            "variables": dict(self.variables),
            "model": self.model,
            "params": _json_copy(dict(self.params)),
        }

    @functools.cached_property
    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON of ``content()``; name and number do not count."""
        canonical = json.dumps(self.content(), sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def version(self) -> str:
        """``"<number>-<first 8 hex digits of content_hash>"``."""
        return f"{self.number}-{self.content_hash[:8]}"

    def with_number(self, number: int) -> Template:
        """The same content under another version number."""
        return Template(self.name, number, self.messages, self.variables, self.model,
                        self.params, self.description, self.tags)

    def to_dict(self) -> dict[str, Any]:
        """Plain data in file order (``version`` is informational; it is recomputed)."""
        return {
            "name": self.name,
            "number": self.number,
            "version": self.version,
            "description": self.description,
            "tags": list(self.tags),
            "model": self.model,
            "params": _json_copy(dict(self.params)),
            "variables": dict(self.variables),
            "messages": [dict(m) for m in self.messages],
        }

    def render(self, **variables: Any) -> RenderedPrompt:
        """The messages with ``variables`` filled in; any mismatch is a ``TemplateError``."""
        where = f"template {self.name!r} version {self.version}"
        for name in self.variables:
            if name not in variables:
                raise TemplateError(f"{where}: variable {name!r} is missing",
                                    fix=f"pass {name}=<{self.variables[name]}>")
        for name, value in variables.items():
            if name not in self.variables:
                close = difflib.get_close_matches(name, list(self.variables), n=1)
                hint = f"did you mean {close[0]!r}?" if close else (
                    f"declared: {', '.join(self.variables) or 'none'}")
                raise TemplateError(f"{where}: variable {name!r} is not declared", fix=hint)
            type_name = self.variables[name]
            if (isinstance(value, bool) and type_name != "bool") or not isinstance(
                    value, VARIABLE_TYPES[type_name]):
                raise TemplateError(
                    f"{where}: variable {name!r} must be {type_name}, "
                    f"got {type(value).__name__}")
        messages = [{"role": m["role"], "content": self._render_one(i, m["content"], variables)}
                    for i, m in enumerate(self.messages)]
        return RenderedPrompt(messages=messages, model=self.model,
                              params=_json_copy(dict(self.params)),
                              template_name=self.name, template_version=self.version)

    def _render_one(self, i: int, source: str, variables: Mapping[str, Any]) -> str:
        compiled, _, _ = _parse(source)
        assert compiled is not None  # checked in __post_init__
        where = f"template {self.name!r} version {self.version}: messages[{i}]"
        try:
            return compiled.render(variables)
        except SecurityError as exc:
            raise TemplateError(f"{where}: unsafe operation blocked: {exc}") from None
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{where}: undefined value: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - template code is untrusted; say what broke
            raise TemplateError(
                f"{where}: rendering failed: {type(exc).__name__}: {exc}") from None


def _type_name(value: Any) -> str:
    return {dict: "mapping", list: "list", str: "string", int: "integer", float: "number",
            bool: "boolean", type(None): "null"}.get(type(value), type(value).__name__)


def _check_message_dicts(messages: list[Any], where: str) -> None:
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise TemplateError(f"{where}: messages[{i}] must be a mapping, "
                                f"got {_type_name(message)}")
        for key in message:
            if key not in ("role", "content"):
                close = difflib.get_close_matches(str(key), ["role", "content"], n=1)
                raise TemplateError(f"{where}: messages[{i}]: unknown key {key!r}"
                                    + (f" (did you mean {close[0]!r}?)" if close else ""))
        for key in ("role", "content"):
            if key not in message:
                raise TemplateError(f"{where}: messages[{i}]: missing required key {key!r}")
            if not isinstance(message[key], str):
                raise TemplateError(f"{where}: messages[{i}].{key} must be a string, "
                                    f"got {_type_name(message[key])}")


def template_from_dict(data: Any, *, where: str, number: int | None = None) -> Template:
    """Validate plain data (one parsed YAML/JSON document) and build a ``Template``.

    ``where`` prefixes every error ("export.yaml: templates[2]"), and unknown keys get a
    suggestion, because these files are written by hand. ``number`` overrides the file's.
    """
    if not isinstance(data, Mapping):
        raise TemplateError(f"{where}: expected a mapping, got {_type_name(data)}")
    for key in data:
        if key not in _FIELDS:
            close = difflib.get_close_matches(str(key), _FIELDS, n=1)
            raise TemplateError(
                f"{where}: unknown key {key!r}"
                + (f" (did you mean {close[0]!r}?)" if close else ""),
                fix=f"allowed keys: {', '.join(_FIELDS)}")
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise TemplateError(f"{where}: missing required key(s) {', '.join(missing)}")
    expected: dict[str, tuple[tuple[type, ...], str]] = {
        "name": ((str,), "string"),
        "number": ((int,), "integer"),
        "version": ((str,), "string"),
        "description": ((str,), "string"),
        "tags": ((list,), "list of strings"),
        "model": ((str, type(None)), "string or null"),
        "params": ((dict,), "mapping"),
        "variables": ((dict,), "mapping of name to type"),
        "messages": ((list,), "list of {role, content}"),
    }
    for key, (types, label) in expected.items():
        if key in data and (isinstance(data[key], bool) or not isinstance(data[key], types)):
            raise TemplateError(f"{where}: {key!r} must be a {label}, "
                                f"got {_type_name(data[key])}")
    _check_message_dicts(data["messages"], where)
    tags: Sequence[Any] = data.get("tags", [])
    if not all(isinstance(tag, str) for tag in tags):
        raise TemplateError(f"{where}: 'tags' must be a list of strings")
    try:
        return Template(
            name=data["name"],
            number=number if number is not None else data.get("number", 1),
            messages=tuple(data["messages"]),
            variables=data["variables"],
            model=data.get("model"),
            params=data.get("params", {}),
            description=data.get("description", ""),
            tags=tuple(tags),
        )
    except TemplateError as exc:
        raise TemplateError(f"{where}: {exc.message}", fix=exc.fix) from None
