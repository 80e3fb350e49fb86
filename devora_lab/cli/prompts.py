"""``devora-lab prompts list | show | diff | export | import | label``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from devora_lab.cli.context import console, open_workspace
from devora_lab.errors import ConfigError

if TYPE_CHECKING:
    from devora_lab.prompts import PromptRegistry

__all__ = ["register"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    prompts = commands.add_parser(
        "prompts", parents=[common], help="versioned prompt templates: list, show, label"
    )
    sub = prompts.add_subparsers(dest="prompts_command", required=True, metavar="ACTION")

    listing = sub.add_parser("list", parents=[common], help="every template and its labels")
    listing.set_defaults(handler=_list)

    show = sub.add_parser("show", parents=[common], help="one version as YAML")
    show.add_argument("name")
    which = show.add_mutually_exclusive_group()
    which.add_argument("--label", help="the version this label points at")
    which.add_argument("--version", help="a number (3) or version string (3-1a2b3c4d)")
    show.set_defaults(handler=_show)

    diff = sub.add_parser("diff", parents=[common], help="unified diff of two versions")
    diff.add_argument("name")
    diff.add_argument("a", help="older version (number or version string)")
    diff.add_argument("b", help="newer version (number or version string)")
    diff.set_defaults(handler=_diff)

    export = sub.add_parser("export", parents=[common], help="write templates to YAML or JSON")
    export.add_argument("names", nargs="*", metavar="NAME", help="default: every template")
    export.add_argument("--format", choices=["yaml", "json"], default="yaml")
    export.add_argument("--out", help="file to write (default: standard output)")
    export.set_defaults(handler=_export)

    imp = sub.add_parser("import", parents=[common], help="add templates from an export file")
    imp.add_argument("path", help="YAML or JSON file (an export, or a single template)")
    imp.set_defaults(handler=_import)

    label = sub.add_parser("label", parents=[common], help="point a label at a version")
    label.add_argument("name")
    label.add_argument("label", help="e.g. production, staging")
    label.add_argument("version", help="a number (3) or version string (3-1a2b3c4d)")
    label.set_defaults(handler=_label)


def _registry(args: argparse.Namespace) -> PromptRegistry:
    from devora_lab.prompts import PromptRegistry

    return PromptRegistry.for_workspace(open_workspace(args))


def _list(args: argparse.Namespace) -> int:
    from rich.table import Table

    registry = _registry(args)
    table = Table(title="Prompt templates")
    for header in ("name", "versions", "latest", "labels", "description"):
        table.add_column(header)
    for name in registry.names():
        versions = registry.versions(name)
        labels = ", ".join(f"{k}={v}" for k, v in registry.labels(name).items())
        table.add_row(name, str(len(versions)), versions[-1].version, labels or "-",
                      versions[-1].description)
    console().print(table)
    return 0


def _show(args: argparse.Namespace) -> int:
    from devora_lab.prompts.registry import dump_yaml

    template = _registry(args).get(args.name, label=args.label, version=args.version)
    print(dump_yaml(template.to_dict()), end="")
    return 0


def _diff(args: argparse.Namespace) -> int:
    text = _registry(args).diff(args.name, args.a, args.b)
    print(text or f"versions {args.a} and {args.b} have the same content", end="" if text else "\n")
    return 0


def _export(args: argparse.Namespace) -> int:
    text = _registry(args).export(args.names or None, format=args.format)
    if args.out is None:
        print(text, end="")
        return 0
    try:
        Path(args.out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {args.out}: {exc.strerror}") from None
    print(f"wrote {text.count(chr(10))} lines to {args.out}")
    return 0


def _import(args: argparse.Namespace) -> int:
    path = Path(args.path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}",
                          fix="check the path") from None
    fmt: Literal["yaml", "json"] = "json" if path.suffix.lower() == ".json" else "yaml"
    for template in _registry(args).import_(text, format=fmt, source=str(path)):
        print(f"{template.name} {template.version}")
    return 0


def _label(args: argparse.Namespace) -> int:
    registry = _registry(args)
    version: str | int = int(args.version) if args.version.isdigit() else args.version
    registry.set_label(args.name, args.label, version)
    print(f"{args.name}: {args.label} -> {registry.labels(args.name)[args.label]}")
    return 0
