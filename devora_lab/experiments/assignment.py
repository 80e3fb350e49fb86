"""Which variant a unit gets: deterministic from a hash, and sticky once recorded.

**The hash.** ``bucket(salt, unit_id)`` takes SHA-256 of ``f"{salt}:{unit_id}"`` (UTF-8),
reads its first 8 bytes as a big-endian unsigned integer, keeps the top 53 bits and divides
by 2**53. The result is uniform on [0, 1), the same in every process, machine and Python
version (unlike ``hash()``), and exactly representable as a float, so it is never rounded up
to 1.0 (dividing all 64 bits by 2**64 would be, for the largest values). The variants lie
on [0, 1) in order, each taking ``weight / total weight``; the unit gets the variant its
bucket falls in. The experiment's salt keeps experiments independent of each other.

**Stickiness.** The pure hash (``assign``) depends on the current weights, so moving weight
from A to B moves the units near the boundary from A to B: they would see both variants,
and their data would count for both. ``AssignmentStore`` prevents that: it records each
unit's first variant, and a unit that comes back gets its recorded variant whatever the
weights are now; only new units follow the current weights. The trade-off is one SQLite
row per unit (``request`` units add one per request) and a lookup per call; without a
store, assignment is a pure function, free and stateless, and sticky only while the
weights stay as they were.

**First exposure.** ``Assigner.variant_for`` writes an ``experiment.exposure`` event when,
and only when, its ``INSERT OR IGNORE`` is the one that recorded the unit: SQLite lets
exactly one of several racing processes insert the row, so each unit is logged once
across every process of the workspace. If a process dies between that insert and the
event write, the exposure is lost rather than doubled (at most once).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from devora_lab.errors import ConfigError, DevoraError, WorkspaceError
from devora_lab.events.schema import Event, EventKind
from devora_lab.experiments.model import Experiment, Variant

if TYPE_CHECKING:
    from devora_lab.events import EventLog
    from devora_lab.experiments.registry import ExperimentRegistry

__all__ = ["Assigner", "AssignmentStore", "assign", "bucket"]

log = logging.getLogger("devora_lab.experiments")

_SCHEMA_VERSION: Final = 1
_SCHEMA: Final = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS assignments (
    experiment  TEXT NOT NULL,
    unit_id     TEXT NOT NULL,
    variant     TEXT NOT NULL,
    assigned_at REAL NOT NULL,
    PRIMARY KEY (experiment, unit_id)
) WITHOUT ROWID;
PRAGMA user_version = {_SCHEMA_VERSION};
COMMIT;
"""


def bucket(salt: str, unit_id: str) -> float:
    """The unit's point in [0, 1): the top 53 bits of the first 8 bytes of
    ``sha256(f"{salt}:{unit_id}")``, divided by 2**53 (see the module's docstring)."""
    digest = hashlib.sha256(f"{salt}:{unit_id}".encode()).digest()
    return _fraction(digest[:8])


def _fraction(eight_bytes: bytes) -> float:
    """Eight bytes as a float in [0, 1): 53 bits fit a double exactly, so never 1.0."""
    return (int.from_bytes(eight_bytes, "big") >> 11) / 2**53


def _pick(variants: Sequence[Variant], point: float) -> Variant:
    """The variant whose share of [0, 1) holds ``point``, variants laid out in order."""
    total = math.fsum(variant.weight for variant in variants)
    edge = 0.0
    for variant in variants:
        edge += variant.weight / total
        if point < edge:
            return variant
    return variants[-1]  # only when rounding left the last edge a hair below 1


def _unit_id(unit_id: object) -> str:
    if not isinstance(unit_id, str) or not unit_id:
        raise ConfigError(f"unit_id cannot be {unit_id!r}",
                          fix="pass the user, session or request id the experiment splits on")
    return unit_id


def assign(experiment: Experiment, unit_id: str) -> Variant:
    """The variant the pure hash gives ``unit_id`` under the experiment's current weights.

    Deterministic, with no state; a unit may move to another variant when the weights
    change. ``Assigner`` with an ``AssignmentStore`` keeps units where they first were.
    """
    return _pick(experiment.variants, bucket(experiment.salt, _unit_id(unit_id)))


class AssignmentStore:
    """First assignments of units, in ``<folder>/assignments.sqlite`` (``folder``: the
    workspace's ``experiments/``), shared by every thread and process.

    SQLite in WAL mode lets lookups run beside a writer, and ``busy_timeout`` queues
    writers instead of failing them; each thread of each process has its own connection.
    ``synchronous=NORMAL``: a power cut (not a crash) may forget the last assignments,
    whose units then get the hash's variant under the weights of that moment.
    """

    FILE_NAME: Final = "assignments.sqlite"

    def __init__(self, folder: str | os.PathLike[str], *, busy_timeout: float = 10.0) -> None:
        self.path = Path(folder) / self.FILE_NAME
        self._busy_timeout = busy_timeout
        self._connections: list[sqlite3.Connection] = []
        self._reset_process_state()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(f"cannot create the experiments folder {self.path.parent}: "
                                 f"{exc.strerror}", fix="check the workspace's permissions"
                                 ) from exc
        self._conn()  # open now, so that a bad folder or file shows at construction

    def get(self, experiment: str, unit_id: str) -> str | None:
        """The variant recorded for the unit, or None if it was never assigned."""
        row = self._run("look up", "SELECT variant FROM assignments "
                        "WHERE experiment = ? AND unit_id = ?", (experiment, unit_id))
        return None if row is None else str(row[0])

    def record(self, experiment: str, unit_id: str, variant: str) -> tuple[str, bool]:
        """Record ``variant`` for the unit unless it has one: returns the unit's variant and
        whether this call recorded it (True for exactly one of any racing callers)."""
        conn = self._conn()
        try:
            inserted = conn.execute(
                "INSERT OR IGNORE INTO assignments (experiment, unit_id, variant, assigned_at) "
                "VALUES (?, ?, ?, ?)", (experiment, unit_id, variant, time.time())).rowcount
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc, "record an assignment in") from exc
        if inserted == 1:
            return variant, True
        recorded = self.get(experiment, unit_id)
        if recorded is None:  # cannot happen: the row that blocked ours is never deleted
            raise WorkspaceError(f"the assignment of {unit_id!r} vanished from {self.path}",
                                 fix="do not edit the assignment store by hand")
        return recorded, False

    def counts(self, experiment: str) -> dict[str, int]:
        """How many units each variant was first assigned (variants with none left out)."""
        try:
            rows = self._conn().execute(
                "SELECT variant, count(*) FROM assignments WHERE experiment = ? "
                "GROUP BY variant ORDER BY variant", (experiment,)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc, "count the assignments in") from exc
        return {str(variant): int(count) for variant, count in rows}

    def close(self) -> None:
        """Close this process's connections (threads still using the store reopen one)."""
        if os.getpid() == self._pid:
            with self._lock:
                for conn in self._connections:
                    conn.close()
                self._connections = []
        self._reset_process_state()

    def _run(self, what: str, sql: str, params: tuple[str, ...]) -> tuple[object, ...] | None:
        try:
            row: tuple[object, ...] | None = self._conn().execute(sql, params).fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc, f"{what} an assignment in") from exc
        return row

    def _reset_process_state(self) -> None:
        """Fresh connections at start and in a forked child, which must not use its
        parent's SQLite connections (their locks belong to the parent)."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._connections = []

    def _conn(self) -> sqlite3.Connection:
        if os.getpid() != self._pid:
            self._reset_process_state()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=self._busy_timeout,
                                       isolation_level=None, check_same_thread=False)
                _prepare(conn)
            except sqlite3.DatabaseError as exc:
                raise self._failed(exc, "open") from exc
            with self._lock:
                self._connections.append(conn)
            self._local.conn = conn
        return conn

    def _failed(self, exc: sqlite3.DatabaseError, what: str) -> WorkspaceError:
        return WorkspaceError(f"cannot {what} the assignment store {self.path}: {exc}",
                              fix="check the workspace's permissions and free disk space")

    def __repr__(self) -> str:
        return f"AssignmentStore({str(self.path)!r})"


def _prepare(conn: sqlite3.Connection) -> None:
    """Settings of every connection, and the schema if the file has none yet."""
    conn.execute("PRAGMA synchronous = NORMAL")
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode = WAL")
    if conn.execute("PRAGMA user_version").fetchone()[0] != _SCHEMA_VERSION:
        conn.executescript(_SCHEMA)


class Assigner:
    """Serves variants of the experiments in ``registry``, sticky through ``store``, and
    logs each unit's first exposure to ``event_log``.

    ``variant_for`` reads the experiment on every call (cheap: the registry re-parses a
    file only when it changed), so starting, pausing or re-weighting from the CLI takes
    effect in running processes at once.
    """

    def __init__(self, registry: ExperimentRegistry, store: AssignmentStore,
                 event_log: EventLog | None = None) -> None:
        self.registry = registry
        self.store = store
        self.event_log = event_log

    def variant_for(self, experiment_name: str, unit_id: str, *, user_id: str | None = None,
                    session_id: str | None = None,
                    request_id: str | None = None) -> Variant | None:
        """The variant for ``unit_id`` (the user, session or request id, per the
        experiment's ``unit``), or None when the experiment is a draft or completed.

        A paused experiment serves its control to everyone and records and logs nothing.
        A running one serves the unit's recorded variant, else records the hash's variant
        under the current weights and logs the exposure. ConfigError if there is no such
        experiment. If the store fails, the hash's variant is served, logged as a warning,
        with no exposure event (it could not be told apart from a repeat).
        """
        experiment = self.registry.get(experiment_name)
        unit = _unit_id(unit_id)
        if experiment.state == "paused":
            return experiment.control
        if experiment.state != "running":
            return None
        try:
            return self._sticky(experiment, unit, user_id, session_id, request_id)
        except WorkspaceError:
            log.warning("experiment %s: the assignment store failed; serving %s the hash's "
                        "variant, unrecorded", experiment.name, unit, exc_info=True)
            return assign(experiment, unit)

    def _sticky(self, experiment: Experiment, unit_id: str, user_id: str | None,
                session_id: str | None, request_id: str | None) -> Variant:
        recorded = self.store.get(experiment.name, unit_id)
        if recorded is not None:
            return self._known(experiment, unit_id, recorded)
        name, first = self.store.record(experiment.name, unit_id, assign(experiment, unit_id).name)
        variant = self._known(experiment, unit_id, name)
        if first:
            self._expose(experiment, variant, unit_id, user_id, session_id, request_id)
        return variant

    @staticmethod
    def _known(experiment: Experiment, unit_id: str, name: str) -> Variant:
        """The recorded variant; the hash's if the record names one the experiment lacks
        (only a hand-edited file can do that: variants cannot be removed)."""
        for variant in experiment.variants:
            if variant.name == name:
                return variant
        log.warning("experiment %s: unit %s is recorded in unknown variant %s; serving the "
                    "hash's variant", experiment.name, unit_id, name)
        return assign(experiment, unit_id)

    def _expose(self, experiment: Experiment, variant: Variant, unit_id: str,
                user_id: str | None, session_id: str | None, request_id: str | None) -> None:
        """Log the unit's first exposure; a broken log must not fail the caller's request."""
        if self.event_log is None:
            return
        ids = {"user": user_id, "session": session_id, "request": request_id}
        ids[experiment.unit] = ids[experiment.unit] or unit_id
        attributes: dict[str, object] = {"unit": experiment.unit, "unit_id": unit_id}
        if variant.model is not None:
            attributes["model"] = variant.model
        event = Event(kind=EventKind.EXPERIMENT_EXPOSURE, experiment=experiment.name,
                      variant=variant.name, user_id=ids["user"], session_id=ids["session"],
                      request_id=ids["request"], template_name=experiment.template,
                      template_version=variant.template_version, attributes=attributes)
        try:
            self.event_log.write(event)
        except DevoraError:
            log.warning("experiment %s: could not write the exposure of %s", experiment.name,
                        unit_id, exc_info=True)
