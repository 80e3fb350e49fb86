"""Budgets kept in one JSON file per workspace, safe with several processes."""

from __future__ import annotations

import builtins
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devora_lab.costs.budgets import Budget
from devora_lab.errors import ConfigError, WorkspaceError

__all__ = ["BudgetRegistry"]


class BudgetRegistry:
    """Budgets kept as JSON in one file (``<workspace>/budgets.json``).

    Changes are read-modify-write under an exclusive ``fcntl`` lock on ``<file>.lock`` and
    land with ``os.replace`` of a temporary file, so concurrent processes never lose each
    other's changes and readers never see half a file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def set(self, budget: Budget) -> None:
        """Add ``budget``, or replace the one with its name."""
        with self._locked():
            budgets = {b.name: b for b in self._read()}
            budgets[budget.name] = budget
            self._write(builtins.list(budgets.values()))

    def remove(self, name: str) -> None:
        """Remove the budget called ``name``; ConfigError if there is none."""
        with self._locked():
            budgets = self._read()
            kept = [b for b in budgets if b.name != name]
            if len(kept) == len(budgets):
                raise ConfigError(f"there is no budget named {name!r} in {self.path}",
                                  fix=f"use one of: {', '.join(b.name for b in budgets)}")
            self._write(kept)

    def list(self) -> builtins.list[Budget]:
        """Every budget, in the order they were first set."""
        return self._read()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = open(self.path.with_name(self.path.name + ".lock"), "a+b")  # noqa: SIM115
        except OSError as exc:
            raise WorkspaceError(f"cannot lock the budget file {self.path}: {exc}",
                                 fix="check that the workspace folder is writable") from exc
        with lock:  # closing the file drops the lock
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            yield

    def _read(self) -> builtins.list[Budget]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise WorkspaceError(f"cannot read the budget file {self.path}: {exc}",
                                 fix="check the file's permissions") from exc
        try:
            return [Budget.from_dict(item) for item in json.loads(text)["budgets"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"the budget file {self.path} is malformed: {exc}",
                              fix="fix or delete the file, then set the budgets again") from exc

    def _write(self, budgets: builtins.list[Budget]) -> None:
        text = json.dumps({"version": 1, "budgets": [b.to_dict() for b in budgets]}, indent=2)
        try:
            with tempfile.NamedTemporaryFile("w", dir=self.path.parent, delete=False,
                                             prefix=f".{self.path.name}.", encoding="utf-8") as f:
                f.write(text + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(f.name, self.path)
        except OSError as exc:
            raise WorkspaceError(f"cannot write the budget file {self.path}: {exc}",
                                 fix="check that the workspace folder is writable") from exc
