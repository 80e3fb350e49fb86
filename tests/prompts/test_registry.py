"""The registry: files, versions, labels, diff, export/import and concurrent writers."""

from __future__ import annotations

import argparse
import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest
import yaml

from devora_lab.prompts import PromptRegistry, TemplateError
from devora_lab.workspace import Workspace

MESSAGES = [{"role": "system", "content": "You greet people."},
            {"role": "user", "content": "Greet {{ who }} {{ times }} times."}]
VARIABLES = {"who": "str", "times": "int"}


@pytest.fixture
def registry(tmp_path: Path) -> PromptRegistry:
    return PromptRegistry(tmp_path / "prompts")


def _files(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def test_register_stores_readable_yaml_and_numbers_versions(registry: PromptRegistry) -> None:
    first = registry.register("greet", MESSAGES, variables=VARIABLES, model="gpt-4o",
                              params={"temperature": 0.1}, description="d", tags=["x"])
    assert first.number == 1
    assert registry.folder is not None
    data = yaml.safe_load((registry.folder / "greet" / "v1.yaml").read_text())
    assert data["messages"] == MESSAGES and data["variables"] == VARIABLES
    second = registry.register(
        "greet", [*MESSAGES[:1], {"role": "user", "content": "Hi {{ who }}"}],
        variables={"who": "str"})
    assert second.number == 2 and second.version != first.version
    assert [t.version for t in registry.versions("greet")] == [first.version, second.version]
    assert registry.get("greet") == second  # no production label: latest
    assert registry.get("greet", version=1) == first
    assert registry.get("greet", version=first.version) == first
    assert registry.get("greet", version="1") == first
    assert "greet" in registry.names()


def test_identical_content_dedups_and_files_are_never_overwritten(
        registry: PromptRegistry) -> None:
    first = registry.register("greet", MESSAGES, variables=VARIABLES)
    assert registry.folder is not None
    before = (registry.folder / "greet" / "v1.yaml").read_bytes()
    again = registry.register("greet", MESSAGES, variables=VARIABLES, description="new words")
    assert again == first and again.description == first.description
    assert (registry.folder / "greet" / "v1.yaml").read_bytes() == before
    assert len(registry.versions("greet")) == 1


def test_builtins_are_read_only_and_workspace_versions_continue(
        registry: PromptRegistry) -> None:
    builtin = registry.get("code-review")
    assert builtin.number == 1 and registry.labels("code-review") == {
        "production": builtin.version}
    with pytest.raises(TemplateError, match="read-only"):
        PromptRegistry().register("code-review", MESSAGES, variables=VARIABLES)
    assert registry.register("code-review", builtin.messages, variables=builtin.variables,
                             model=builtin.model, params=builtin.params) == builtin
    mine = registry.register("code-review", MESSAGES, variables=VARIABLES)
    assert mine.number == 2
    assert registry.get("code-review") == builtin  # production still on the built-in
    registry.set_label("code-review", "production", 2)
    assert registry.get("code-review") == mine
    assert PromptRegistry(registry.folder, builtin=False).versions("code-review") == [mine]


def test_labels(registry: PromptRegistry) -> None:
    one = registry.register("greet", MESSAGES, variables=VARIABLES)
    two = registry.register("greet", MESSAGES[:1], variables={})
    registry.set_label("greet", "production", one.version)
    registry.set_label("greet", "staging", 2)
    assert registry.labels("greet") == {"production": one.version, "staging": two.version}
    assert registry.get("greet") == one
    assert registry.get("greet", label="staging") == two
    registry.set_label("greet", "production", "2")
    assert registry.get("greet") == two
    with pytest.raises(TemplateError, match="no label 'canary'"):
        registry.get("greet", label="canary")
    with pytest.raises(TemplateError, match="no version 9"):
        registry.set_label("greet", "staging", 9)
    with pytest.raises(TemplateError, match="not 1-deadbeef"):
        registry.get("greet", version="1-deadbeef")
    with pytest.raises(TemplateError, match="not allowed"):
        registry.set_label("greet", "Bad Label", 1)
    with pytest.raises(TemplateError, match="not both"):
        registry.get("greet", label="staging", version=1)
    with pytest.raises(TemplateError, match="did you mean greet"):
        registry.get("greeet")


def test_diff(registry: PromptRegistry) -> None:
    registry.register("greet", MESSAGES, variables=VARIABLES)
    registry.register("greet", [MESSAGES[0], {"role": "user", "content": "Wave at {{ who }}."}],
                      variables={"who": "str"})
    text = registry.diff("greet", 1, 2)
    assert text.startswith("--- greet@1-") and "+++ greet@2-" in text
    assert "-  content: Greet {{ who }} {{ times }} times." in text
    assert "+  content: Wave at {{ who }}." in text
    assert "-  times: int" in text
    assert registry.diff("greet", 1, 1) == ""


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_export_import_round_trip(tmp_path: Path, registry: PromptRegistry, fmt: Any) -> None:
    registry.register("greet", MESSAGES, variables=VARIABLES, model="m", params={"a": [1, 2]},
                      description="multi\nline", tags=["t"])
    registry.register("greet", MESSAGES[:1], variables={})
    text = registry.export(["greet", "bug-fixing"], format=fmt)
    if fmt == "json":
        assert json.loads(text)["format"] == "devora-prompts/1"
    other = PromptRegistry(tmp_path / "other")
    imported = other.import_(text, format=fmt)
    assert [t.version for t in imported] == [t.version for t in
                                              [*registry.versions("greet"),
                                               registry.get("bug-fixing")]]
    assert other.versions("greet") == registry.versions("greet")
    assert other.import_(text) == imported  # idempotent: identical content dedups
    assert len(other.versions("greet")) == 2
    assert other.folder is not None and not (other.folder / "bug-fixing").exists()


def test_import_single_template_file(registry: PromptRegistry) -> None:
    text = yaml.safe_dump({"name": "solo", "messages": MESSAGES, "variables": VARIABLES})
    [solo] = registry.import_(text)
    assert solo.name == "solo" and solo.number == 1


BAD_IMPORTS = [
    ("templates: [\n  - name: x\n    messages: [", "invalid YAML at line"),
    ('{"templates": [', "invalid JSON at line 1"),
    ("templates:\n  - name: x\n    variables: {}\n", r"templates\[0\]: missing required key"
                                                     r"\(s\) messages"),
    ("templates:\n  - name: x\n    messages: hello\n    variables: {}\n",
     r"templates\[0\]: 'messages' must be a list"),
    ("templates:\n  - name: x\n    variables: {}\n    messages:\n      - role: user\n"
     "        content: 5\n", r"messages\[0\].content must be a string, got integer"),
    ("templates:\n  - name: x\n    variables: {}\n    mesages: []\n    messages: []\n",
     "unknown key 'mesages' \\(did you mean 'messages'\\?\\)"),
    ("templates:\n  - name: x\n    variables: {}\n    messages:\n      - role: user\n"
     "        contnet: hi\n", "unknown key 'contnet' \\(did you mean 'content'\\?\\)"),
    ("templates:\n  - name: x\n    variables: {}\n    messages:\n      - role: user\n"
     "        content: '{{ secret }}'\n", "undeclared variable.*secret"),
    ("templates:\n  - name: x\n    variables: {a: text}\n    messages:\n      - role: user\n"
     "        content: '{{ a }}'\n", "unknown type 'text'"),
    ("templates:\n  - name: x\n    variables: {}\n    params: 3\n    messages: []\n",
     "'params' must be a mapping, got integer"),
    ("templats: []\n", "unknown key 'templats' \\(did you mean 'templates'\\?\\)"),
    ("42\n", "expected templates"),
]


@pytest.mark.parametrize(("text", "problem"), BAD_IMPORTS)
def test_malformed_imports_raise_clearly_and_write_nothing(
        registry: PromptRegistry, text: str, problem: str) -> None:
    good = {"name": "good", "messages": MESSAGES, "variables": VARIABLES}
    if text.startswith("templates:\n"):  # a valid template first: it must not be written
        text = "templates:\n  - " + json.dumps(good) + "\n" + text.split("\n", 1)[1]
        problem = problem.replace("templates\\[0\\]", "templates\\[1\\]")
    assert registry.folder is not None
    before = _files(registry.folder)
    with pytest.raises(TemplateError, match=problem):
        registry.import_(text, source="bad.yaml")
    assert _files(registry.folder) == before
    assert "good" not in registry.names()


def test_hand_broken_version_file_is_reported_with_its_path(registry: PromptRegistry) -> None:
    registry.register("greet", MESSAGES, variables=VARIABLES)
    assert registry.folder is not None
    path = registry.folder / "greet" / "v2.yaml"
    path.write_text("name: greet\nmessages: [}\n")
    with pytest.raises(TemplateError, match=r"v2\.yaml: invalid YAML at line 2"):
        registry.get("greet", version=2)


def _worker(folder: str, worker: int, rounds: int) -> list[str]:
    registry = PromptRegistry(Path(folder), builtin=False)
    made = []
    for i in range(rounds):
        shared = registry.register("shared", [{"role": "user", "content": f"round {i}"}],
                                   variables={})
        mine = registry.register("shared", [{"role": "user", "content": f"w{worker} r{i}"}],
                                 variables={})
        made += [shared.version, mine.version]
        registry.set_label("shared", f"w{worker}", mine.number)
        registry.set_label("shared", "production", shared.number)
    return made


def test_concurrent_registrations_and_label_moves_lose_nothing(tmp_path: Path) -> None:
    workers, rounds = 4, 6
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers) as pool:
        results = pool.starmap(_worker, [(str(tmp_path), w, rounds) for w in range(workers)])
    registry = PromptRegistry(tmp_path, builtin=False)
    versions = registry.versions("shared")
    # rounds shared contents (deduplicated across processes) + one per worker per round
    assert len(versions) == rounds + workers * rounds
    assert [t.number for t in versions] == list(range(1, len(versions) + 1))
    assert len({t.content_hash for t in versions}) == len(versions)
    assert {v for made in results for v in made} == {t.version for t in versions}
    labels = registry.labels("shared")
    assert set(labels) == {"production", *(f"w{w}" for w in range(workers))}
    for w in range(workers):
        assert registry.get("shared", label=f"w{w}").messages[0]["content"] == \
            f"w{w} r{rounds - 1}"
    assert not list(tmp_path.glob("shared/.tmp-*"))


def test_cli_prompts_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from devora_lab.cli import _common
    from devora_lab.cli import prompts as prompts_cli

    # A parser of its own, so the test runs whether or not the command is wired in yet.
    parser = argparse.ArgumentParser(parents=[_common(top=True)])
    prompts_cli.register(parser.add_subparsers(dest="command", required=True),
                         _common(top=False))
    workspace = tmp_path / "ws"

    def run(*argv: str) -> str:
        args = parser.parse_args(["--workspace", str(workspace), "prompts", *argv])
        assert args.handler(args) == 0
        return capsys.readouterr().out

    assert "code-review" in run("list")
    assert "name: bug-fixing" in run("show", "bug-fixing", "--label", "production")
    out = tmp_path / "export.json"
    run("export", "refactoring", "--format", "json", "--out", str(out))
    assert json.loads(out.read_text())["templates"][0]["name"] == "refactoring"
    assert "refactoring 1-" in run("import", str(out))
    registry = PromptRegistry.for_workspace(Workspace(workspace))
    registry.register("refactoring", MESSAGES, variables=VARIABLES)
    assert "staging -> 2-" in run("label", "refactoring", "staging", "2")
    assert "+++ refactoring@2-" in run("diff", "refactoring", "1", "2")
    assert "version: 2-" in run("show", "refactoring", "--label", "staging")
    with pytest.raises(TemplateError, match="no version 7"):
        run("label", "refactoring", "staging", "7")
