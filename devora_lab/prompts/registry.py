"""The prompt registry: built-in templates plus the workspace's, versioned and labelled.

Layout (plain YAML, so that people can read, review and diff it)::

    <workspace>/prompts/<name>/v<N>.yaml    one immutable version each
    <workspace>/prompts/<name>/labels.yaml  label -> version number
    <workspace>/prompts/<name>/.lock        flock target serialising writers

Versions are never overwritten: a new one is linked into place (``os.link`` fails if the
file exists) and registering identical content returns the existing version, so a version
string once logged on an event always means the same text. Writers take an exclusive
``fcntl.flock`` on ``<name>/.lock`` for the whole read-modify-write, so that label moves and
registrations from several processes never lose an update; readers need no lock because
every file appears whole (temporary file + rename/link).

Built-ins ship in ``devora_lab/prompts/builtin/*.yaml`` and are read-only, each version 1
with label ``production``; a workspace version of the same name continues at 2.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import functools
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from devora_lab.prompts.templates import Template, TemplateError, template_from_dict

if TYPE_CHECKING:
    from devora_lab.workspace import Workspace

__all__ = ["DEFAULT_LABEL", "EXPORT_FORMAT", "PromptRegistry", "dump_yaml"]

DEFAULT_LABEL = "production"
EXPORT_FORMAT = "devora-prompts/1"
_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.yaml$")
_VERSION_TEXT = re.compile(r"^([1-9][0-9]*)(?:-([0-9a-f]{1,64}))?$")
_LABEL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class _Dumper(yaml.SafeDumper):
    """Safe YAML with multi-line strings as ``|`` blocks, so prompts stay readable."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def dump_yaml(data: Any) -> str:
    """YAML in the registry's style: key order kept, unicode kept, blocks for long text."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def _parse_text(text: str, fmt: str, where: str) -> Any:
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise TemplateError(f"{where}: invalid JSON at line {exc.lineno} column "
                                f"{exc.colno}: {exc.msg}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TemplateError(f"{where}: invalid YAML{at}: {problem}") from None


def _load_file(path: Path, where: str, *, number: int | None = None) -> Template:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"{where}: cannot read: {exc.strerror}") from None
    template = template_from_dict(_parse_text(text, "yaml", where), where=where, number=number)
    if template.name != path.parent.name and number is not None:
        raise TemplateError(f"{where}: name {template.name!r} does not match its folder")
    return template


@functools.lru_cache(maxsize=1)
def _builtins() -> dict[str, Template]:
    """The packaged templates by name, read once per process."""
    found: dict[str, Template] = {}
    folder = resources.files("devora_lab.prompts") / "builtin"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        where = f"built-in {entry.name}"
        data = _parse_text(entry.read_text(encoding="utf-8"), "yaml", where)
        template = template_from_dict(data, where=where, number=1)
        if f"{template.name}.yaml" != entry.name:
            raise TemplateError(f"{where}: name {template.name!r} does not match the file")
        found[template.name] = template
    return found


class PromptRegistry:
    """Templates by name and version, from the package and (if given) a workspace folder.

    Without a folder the registry is read-only and holds the built-ins only.
    """

    def __init__(self, folder: Path | None = None, *, builtin: bool = True) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._builtin: dict[str, Template] = dict(_builtins()) if builtin else {}
        # path -> ((mtime_ns, size), template): files never change once written, but a
        # cache keyed on stat keeps a hand-edited file from being served stale.
        self._files: dict[Path, tuple[tuple[int, int], Template]] = {}

    @classmethod
    def for_workspace(cls, workspace: Workspace) -> PromptRegistry:
        """The registry stored in ``workspace.prompts_dir``."""
        return cls(workspace.prompts_dir)

    # -- reading ---------------------------------------------------------------------------

    def _dir(self, name: str) -> Path | None:
        if self.folder is None or not _LABEL.match(name):  # also keeps '..' out of paths
            return None
        return self.folder / name

    def _workspace_numbers(self, name: str) -> list[int]:
        folder = self._dir(name)
        if folder is None or not folder.is_dir():
            return []
        numbers = []
        for entry in folder.iterdir():
            match = _VERSION_FILE.match(entry.name)
            if match:
                numbers.append(int(match.group(1)))
        return sorted(numbers)

    def _load(self, name: str, number: int) -> Template:
        builtin = self._builtin.get(name)
        if builtin is not None and builtin.number == number:
            return builtin
        folder = self._dir(name)
        assert folder is not None
        path = folder / f"v{number}.yaml"
        try:
            stat = path.stat()
        except OSError:
            raise TemplateError(f"template {name!r} has no version {number}") from None
        key = (stat.st_mtime_ns, stat.st_size)
        cached = self._files.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        template = _load_file(path, str(path), number=number)
        self._files[path] = (key, template)
        return template

    def _numbers(self, name: str) -> list[int]:
        numbers = self._workspace_numbers(name)
        builtin = self._builtin.get(name)
        if builtin is not None:
            if builtin.number in numbers:
                raise TemplateError(
                    f"template {name!r}: version {builtin.number} exists both built in and in "
                    f"{self._dir(name)}",
                    fix=f"rename v{builtin.number}.yaml in the workspace to a free number")
            numbers = sorted([builtin.number, *numbers])
        return numbers

    def _known(self, name: str) -> list[int]:
        numbers = self._numbers(name)
        if not numbers:
            close = difflib.get_close_matches(name, self.names(), n=3)
            raise TemplateError(
                f"no prompt template named {name!r}",
                fix=f"did you mean {', '.join(close)}?" if close else
                "see `devora-lab prompts list`")
        return numbers

    def names(self) -> list[str]:
        """Every template name, built-in and workspace, sorted."""
        names = set(self._builtin)
        if self.folder is not None and self.folder.is_dir():
            names.update(entry.name for entry in self.folder.iterdir()
                         if entry.is_dir() and self._workspace_numbers(entry.name))
        return sorted(names)

    def versions(self, name: str) -> list[Template]:
        """All versions of ``name``, oldest first."""
        return [self._load(name, number) for number in self._known(name)]

    def _label_numbers(self, name: str) -> dict[str, int]:
        labels: dict[str, int] = {}
        if name in self._builtin:
            labels[DEFAULT_LABEL] = self._builtin[name].number
        folder = self._dir(name)
        if folder is not None and (folder / "labels.yaml").is_file():
            path = folder / "labels.yaml"
            data = _parse_text(path.read_text(encoding="utf-8"), "yaml", str(path))
            if data is None:
                data = {}
            if not isinstance(data, dict) or not all(
                    isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                    for k, v in data.items()):
                raise TemplateError(f"{path}: expected a mapping of label to version number")
            labels.update(data)
        return labels

    def labels(self, name: str) -> dict[str, str]:
        """Label -> full version string (``"3-1a2b3c4d"``)."""
        self._known(name)
        return {label: self._load(name, number).version
                for label, number in sorted(self._label_numbers(name).items())}

    def _resolve(self, name: str, version: str | int) -> int:
        numbers = self._known(name)
        digest = None
        if isinstance(version, int) and not isinstance(version, bool):
            number = version
        else:
            match = _VERSION_TEXT.match(str(version).strip())
            if not match:
                raise TemplateError(f"template {name!r}: {version!r} is not a version",
                                    fix="write a number (3) or a version string (3-1a2b3c4d)")
            number, digest = int(match.group(1)), match.group(2)
        if number not in numbers:
            raise TemplateError(f"template {name!r} has no version {number}",
                                fix=f"versions: {', '.join(map(str, numbers))}")
        if digest is not None and not self._load(name, number).content_hash.startswith(digest):
            raise TemplateError(
                f"template {name!r}: version {number} is "
                f"{self._load(name, number).version}, not {version}",
                fix="the content hash does not match; check which copy you meant")
        return number

    def get(self, name: str, *, label: str | None = None,
            version: str | int | None = None) -> Template:
        """A version by number/string, else by label, else ``production``, else the latest."""
        if label is not None and version is not None:
            raise TemplateError("give a label or a version, not both")
        numbers = self._known(name)
        if version is not None:
            return self._load(name, self._resolve(name, version))
        labels = self._label_numbers(name)
        if label is not None:
            if label not in labels:
                raise TemplateError(
                    f"template {name!r} has no label {label!r}",
                    fix=f"labels: {', '.join(sorted(labels)) or 'none'}; "
                        f"set one with `devora-lab prompts label {name} {label} VERSION`")
            return self._load(name, labels[label])
        if DEFAULT_LABEL in labels:
            return self._load(name, labels[DEFAULT_LABEL])
        return self._load(name, numbers[-1])

    def diff(self, name: str, a: str | int, b: str | int) -> str:
        """Unified diff of two versions' YAML (empty when the content is the same)."""
        left, right = self.get(name, version=a), self.get(name, version=b)
        return "".join(difflib.unified_diff(
            dump_yaml(left.to_dict()).splitlines(keepends=True),
            dump_yaml(right.to_dict()).splitlines(keepends=True),
            fromfile=f"{name}@{left.version}", tofile=f"{name}@{right.version}"))

    # -- writing ---------------------------------------------------------------------------

    def _writable_dir(self, name: str) -> Path:
        if self.folder is None:
            raise TemplateError("this prompt registry has no workspace folder; it is read-only",
                                fix="use PromptRegistry.for_workspace(workspace)")
        if not _LABEL.match(name):
            raise TemplateError(f"template name {name!r} is not allowed",
                                fix="use 1-64 lower-case letters, digits, '.', '_' or '-'")
        folder = self.folder / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @contextlib.contextmanager
    def _locked(self, folder: Path) -> Iterator[None]:
        with open(folder / ".lock", "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    @staticmethod
    def _temp(folder: Path, text: str) -> Path:
        fd, temp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".yaml")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        return Path(temp)

    def register(
        self,
        name: str,
        messages: Sequence[Mapping[str, str]],
        *,
        variables: Mapping[str, str],
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
        description: str = "",
        tags: Iterable[str] = (),
    ) -> Template:
        """Store a new version (last number + 1), or return the one with identical content."""
        candidate = Template(name=name, number=1, messages=tuple(dict(m) for m in messages),
                             variables=variables, model=model, params=params or {},
                             description=description, tags=tuple(tags))
        return self._store(candidate)

    def _existing(self, candidate: Template) -> Template | None:
        for number in self._numbers(candidate.name):
            existing = self._load(candidate.name, number)
            if existing.content_hash == candidate.content_hash:
                return existing
        return None

    def _store(self, candidate: Template) -> Template:
        # Versions never change once written, so a match found without the lock is final;
        # re-importing built-ins then leaves no empty folders behind.
        found = self._existing(candidate)
        if found is not None:
            return found
        folder = self._writable_dir(candidate.name)
        with self._locked(folder):
            found = self._existing(candidate)  # again: another process may have added it
            if found is not None:
                return found
            numbers = self._numbers(candidate.name)
            template = candidate.with_number(numbers[-1] + 1 if numbers else 1)
            data = template.to_dict()
            del data["version"]  # derived from the content; storing it could only disagree
            temp = self._temp(folder, dump_yaml(data))
            target = folder / f"v{template.number}.yaml"
            try:
                os.link(temp, target)  # fails rather than overwrite, even without the lock
            except FileExistsError:
                raise TemplateError(f"{target} already exists; versions are never "
                                    "overwritten") from None
            finally:
                temp.unlink(missing_ok=True)
        return template

    def set_label(self, name: str, label: str, version: str | int) -> None:
        """Point ``label`` at a version; the move is atomic and serialised across processes."""
        if not isinstance(label, str) or not _LABEL.match(label):
            raise TemplateError(f"label {label!r} is not allowed",
                                fix="use lower-case letters, digits, '.', '_' or '-'")
        number = self._resolve(name, version)
        folder = self._writable_dir(name)
        with self._locked(folder):
            path = folder / "labels.yaml"
            stored: dict[str, int] = {}
            if path.is_file():
                data = _parse_text(path.read_text(encoding="utf-8"), "yaml", str(path)) or {}
                if not isinstance(data, dict):
                    raise TemplateError(f"{path}: expected a mapping of label to version")
                stored = dict(data)
            stored[label] = number
            temp = self._temp(folder, dump_yaml(dict(sorted(stored.items()))))
            os.replace(temp, path)

    # -- export and import -----------------------------------------------------------------

    def export(self, names: Iterable[str] | None = None, *,
               format: Literal["yaml", "json"] = "yaml") -> str:
        """Every version of ``names`` (default: all) as one YAML or JSON document."""
        chosen = self.names() if names is None else list(names)
        document = {
            "format": EXPORT_FORMAT,
            "templates": [t.to_dict() for name in chosen for t in self.versions(name)],
        }
        if format == "json":
            return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        if format == "yaml":
            return dump_yaml(document)
        raise TemplateError(f"unknown export format {format!r}", fix="use yaml or json")

    def import_(self, text: str, *, format: Literal["yaml", "json"] | None = None,
                source: str = "import") -> list[Template]:
        """Validate every template in ``text`` first, then register each in order.

        Accepts an export document, a list of templates, or one template (a ``v<N>.yaml``).
        ``number`` and ``version`` in the file are ignored: each template gets the next
        number here, or the existing version when identical, so importing twice is a no-op.
        Any error is raised before anything is written.
        """
        fmt = format or ("json" if text.lstrip().startswith(("{", "[")) else "yaml")
        if fmt not in ("yaml", "json"):
            raise TemplateError(f"unknown import format {fmt!r}", fix="use yaml or json")
        data = _parse_text(text, fmt, source)
        items: list[Any]
        prefix = source
        if isinstance(data, dict) and not {"name", "messages"} & set(data):
            unknown = sorted(set(data) - {"format", "templates"})
            if unknown:
                close = difflib.get_close_matches(unknown[0], ["format", "templates"], n=1)
                raise TemplateError(f"{source}: unknown key {unknown[0]!r}"
                                    + (f" (did you mean {close[0]!r}?)" if close else ""))
            if data.get("format", EXPORT_FORMAT) != EXPORT_FORMAT:
                raise TemplateError(f"{source}: format {data['format']!r} is not supported",
                                    fix=f"expected {EXPORT_FORMAT}")
            if not isinstance(data.get("templates"), list):
                raise TemplateError(f"{source}: 'templates' must be a list of templates")
            items, prefix = data["templates"], f"{source}: templates"
        elif isinstance(data, list):
            items, prefix = data, source
        elif isinstance(data, dict):
            items = [data]
        else:
            raise TemplateError(f"{source}: expected templates, got "
                                f"{type(data).__name__ if data is not None else 'nothing'}")
        single = len(items) == 1 and isinstance(data, dict) and "templates" not in data
        candidates = [
            template_from_dict(item, where=prefix if single else f"{prefix}[{i}]", number=1)
            for i, item in enumerate(items)
        ]
        if self.folder is None and candidates:
            self._writable_dir(candidates[0].name)  # raises: read-only, before any write
        return [self._store(candidate) for candidate in candidates]
