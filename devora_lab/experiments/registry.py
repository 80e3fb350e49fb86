"""Experiments kept as one JSON file each, safe with several processes.

::

    <workspace>/experiments/
      .registry.lock            fcntl lock taken by every change
      <name>.json               the experiment: definition, state, decision and history
      assignments.sqlite        first assignments of units (``AssignmentStore``)

Every change is a read-modify-write under an exclusive ``fcntl`` lock, landing with
``os.replace`` of a temporary file: concurrent processes never lose each other's changes,
and readers, which take no lock, never see half a file. One lock serves the whole folder
because changes are rare (a person or a stopping rule acts), while reads, which happen on
every call that is assigned a variant, stay lock-free and are cached per file version.
"""

from __future__ import annotations

import builtins
import dataclasses
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from devora_lab.errors import ConfigError, WorkspaceError
from devora_lab.events.schema import utc_now
from devora_lab.experiments.model import Decision, Experiment, State, StateChange, _name

__all__ = ["ExperimentRegistry"]

_FORMAT_VERSION: Final = 1
_LOCK_NAME: Final = ".registry.lock"
_SUFFIX: Final = ".json"

_FileVersion = tuple[int, int, int]  # inode, mtime in ns, size: os.replace changes the inode


class ExperimentRegistry:
    """The experiments of one workspace, in ``folder`` (``Workspace.experiments_dir``).

    ``create`` adds a draft; ``start``, ``pause``, ``complete`` and ``set_weights`` change
    one, each recording who made the change (``by``: ``"cli"`` unless told) in its history.
    Every method returns the experiment as stored after the call.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._cache: dict[str, tuple[_FileVersion, Experiment]] = {}
        self._cache_lock = threading.Lock()

    def path_for(self, name: str) -> Path:
        """Where the experiment called ``name`` is stored."""
        return self.folder / f"{name}{_SUFFIX}"

    # -- reading ----------------------------------------------------------------------------

    def get(self, name: str) -> Experiment:
        """The experiment called ``name``; ConfigError naming the known ones if missing.

        Cheap to call per request: the file is parsed again only when it was replaced.
        """
        _name("experiment", "name", name)  # also keeps the path inside the folder
        found = self._load(self.path_for(name))
        if found is None:
            known = ", ".join(sorted(p.stem for p in self.folder.glob(f"*{_SUFFIX}"))) \
                or "none yet"  # file names: one malformed file must not hide the others
            raise ConfigError(f"there is no experiment named {name!r} in {self.folder}",
                              fix=f"create it first, or use one of: {known}")
        return found

    def list(self) -> builtins.list[Experiment]:
        """Every experiment, oldest first."""
        try:
            paths = sorted(self.folder.glob(f"*{_SUFFIX}"))
        except OSError as exc:
            raise WorkspaceError(f"cannot list the experiments in {self.folder}: {exc}",
                                 fix="check the folder's permissions") from exc
        found = [e for e in (self._load(path) for path in paths) if e is not None]
        return sorted(found, key=lambda e: (e.created_at, e.name))

    # -- changing ---------------------------------------------------------------------------

    def create(self, experiment: Experiment, *, by: str = "cli") -> Experiment:
        """Store ``experiment`` as a draft; ConfigError if one with its name exists.

        Names are never reused, so that the events of an old experiment cannot be read as
        the new one's.
        """
        if not isinstance(experiment, Experiment):
            raise ConfigError(f"create needs an Experiment, not {experiment!r}",
                              fix="build one with Experiment(...) or Experiment.from_dict")
        if experiment.state != "draft" or experiment.decision is not None:
            raise ConfigError(f"experiment {experiment.name!r} must be created as a draft, "
                              f"not {experiment.state}", fix="leave state and decision out")
        now = utc_now()
        created = StateChange("draft", now, by, "created", experiment.weights)
        draft = dataclasses.replace(experiment, created_at=now, history=(created,))
        with self._locked():
            path = self.path_for(draft.name)
            if path.exists():
                raise ConfigError(f"an experiment named {draft.name!r} exists already",
                                  fix="choose another name; experiment names are never reused")
            self._write(path, draft)
        return draft

    def start(self, name: str, *, by: str = "cli", reason: str = "") -> Experiment:
        """Start a draft, or resume a paused experiment: new units get variants again."""
        return self._move(name, "running", by, reason)

    def pause(self, name: str, *, by: str = "cli", reason: str = "") -> Experiment:
        """Pause a running experiment: everyone gets the control and nothing is logged."""
        return self._move(name, "paused", by, reason)

    def complete(self, name: str, decision: Decision, *, by: str | None = None) -> Experiment:
        """End a running or paused experiment with ``decision``; it never runs again.

        ``by`` defaults to the decision's ``decided_by``; the history reason is the
        decision's reason.
        """
        if not isinstance(decision, Decision):
            raise ConfigError(f"complete needs a Decision, not {decision!r}",
                              fix="pass Decision(winner=..., reason=..., decided_by=...)")
        who = decision.decided_by if by is None else by
        return self._update(name, lambda e: e.moved_to("completed", by=who,
                                                       reason=decision.reason,
                                                       decision=decision))

    def set_weights(self, name: str, weights: Mapping[str, float], *, by: str = "cli",
                    reason: str = "") -> Experiment:
        """Give the named variants new weights (the others keep theirs).

        Only units not seen before follow the new weights when assignments are recorded
        (``AssignmentStore``); see ``devora_lab.experiments.assignment``.
        """
        return self._update(name, lambda e: e.with_weights(weights, by=by, reason=reason))

    def _move(self, name: str, state: State, by: str, reason: str) -> Experiment:
        return self._update(name, lambda e: e.moved_to(state, by=by, reason=reason))

    def _update(self, name: str, change: Callable[[Experiment], Experiment]) -> Experiment:
        """Apply ``change`` to the stored experiment under the lock, and store the result."""
        with self._locked():
            updated = change(self.get(name))
            self._write(self.path_for(name), updated)
        return updated

    # -- files ------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            lock = open(self.folder / _LOCK_NAME, "a+b")  # noqa: SIM115
        except OSError as exc:
            raise WorkspaceError(f"cannot lock the experiments folder {self.folder}: {exc}",
                                 fix="check that the workspace folder is writable") from exc
        with lock:  # closing the file drops the lock
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            yield

    def _load(self, path: Path) -> Experiment | None:
        """The experiment in ``path`` (None if there is no such file), parsed again only when
        the file was replaced since this registry last read it."""
        try:
            with path.open("rb") as f:
                stat = os.fstat(f.fileno())
                version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
                with self._cache_lock:
                    cached = self._cache.get(path.name)
                if cached is not None and cached[0] == version:
                    return cached[1]
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise WorkspaceError(f"cannot read the experiment file {path}: {exc}",
                                 fix="check the file's permissions") from exc
        experiment = _parse(path, data)
        with self._cache_lock:
            self._cache[path.name] = (version, experiment)
        return experiment

    def _write(self, path: Path, experiment: Experiment) -> None:
        text = json.dumps({"version": _FORMAT_VERSION, "experiment": experiment.to_dict()},
                          indent=2)
        try:
            with tempfile.NamedTemporaryFile("w", dir=self.folder, delete=False,
                                             prefix=f".{path.name}.", encoding="utf-8") as f:
                f.write(text + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(f.name, path)
        except OSError as exc:
            raise WorkspaceError(f"cannot write the experiment file {path}: {exc}",
                                 fix="check that the workspace folder is writable") from exc


def _parse(path: Path, data: bytes) -> Experiment:
    """The experiment in a file's bytes; ConfigError saying which file is malformed."""
    try:
        document = json.loads(data)
        if document.get("version") != _FORMAT_VERSION:
            raise ValueError(f"unknown format version {document.get('version')!r}")
        experiment = Experiment.from_dict(document["experiment"])
    except ConfigError as exc:
        raise ConfigError(f"the experiment file {path} is invalid: {exc.message}",
                          fix=exc.fix) from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"the experiment file {path} is malformed: {exc}",
                          fix="fix the file, or move it aside and create the experiment again"
                          ) from exc
    if f"{experiment.name}{_SUFFIX}" != path.name:
        raise ConfigError(f"the experiment file {path} holds experiment {experiment.name!r}",
                          fix=f"rename the file to {experiment.name}{_SUFFIX}")
    return experiment
