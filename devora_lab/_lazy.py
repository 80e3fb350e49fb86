"""Lazy public names for a package: each is imported from its module on first use.

Keeps ``import devora_lab`` (and its analysis subpackages) fast for code that needs only a
few names, while ``__all__`` and ``dir()`` still list the whole curated API.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, namespace: MutableMapping[str, Any],
                 homes: Mapping[str, Sequence[str]], public: Sequence[str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: ``homes`` maps a module (absolute
    name) to the names it provides; a resolved name is cached in ``namespace``."""
    where = {name: module for module, names in homes.items() for name in names}

    def getattr_(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(public)

    return getattr_, dir_
