"""Where the event log keeps its files, and how they are named.

::

    <root>/                                   local folder or any pyarrow filesystem URI
      date=2026-11-23/                        one Hive partition per UTC day of ``ts``
        seg-<writer>-<n>.parquet              a rolled segment (one per writer segment)
        compact-<id>.parquet                  a merge of small files; its footer lists them
        .tmp-<id>.parquet                     being written; invisible to every reader
    <spool>/                                  always a local folder (default <root>/_active)
      date=2026-11-23/seg-<writer>-<n>.jsonl  segments still being appended to

Parquet readers ignore names starting with ``_`` or ``.``, so ``pyarrow.dataset``,
DuckDB's ``date=*/*.parquet`` glob, polars and Spark read exactly the rolled events.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Final

from devora_lab.errors import WorkspaceError

if TYPE_CHECKING:
    pass

__all__ = ["LogLayout", "ParquetEntry", "SpoolEntry"]

PARTITION_PREFIX: Final = "date="
SEGMENT_PREFIX: Final = "seg-"
COMPACT_PREFIX: Final = "compact-"
TMP_PREFIX: Final = ".tmp-"
REPLACES_KEY: Final = b"devora.replaces"
_PARTITION_RE: Final = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True, slots=True)
class ParquetEntry:
    """A Parquet file of the log as listed: where it is and what it looks like."""

    path: str
    day: date
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        return self.name.removesuffix(".parquet")

    @property
    def is_compacted(self) -> bool:
        return self.name.startswith(COMPACT_PREFIX)


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """A JSON-lines segment still in the spool."""

    path: Path
    day: date

    @property
    def stem(self) -> str:
        return self.path.stem


class LogLayout:
    """Paths of one event log: Parquet under ``root`` (any pyarrow filesystem), spool local."""

    def __init__(self, root: str | os.PathLike[str], spool: str | os.PathLike[str] | None = None):
        from pyarrow import fs as pafs

        root_text = os.fspath(root)
        if "://" in root_text:
            self.fs, self.root = pafs.FileSystem.from_uri(root_text)
            if spool is None:
                raise WorkspaceError(
                    f"the event log at {root_text} is not a local folder; it needs a local spool",
                    fix="pass spool=<a local folder> for the segments still being written",
                )
        else:
            self.fs = pafs.LocalFileSystem()
            self.root = str(Path(root_text).expanduser().resolve())
        self.root = self.root.rstrip("/")
        self.spool = Path(spool if spool is not None else Path(self.root) / "_active").resolve()
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)

    def ensure(self) -> None:
        """Create the root and spool folders, with a clear error when that is impossible."""
        try:
            self.fs.create_dir(self.root, recursive=True)
            self.spool.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(
                f"cannot create the event log folders {self.root} and {self.spool}: {exc.strerror}",
                fix="choose a writable workspace with --workspace or DEVORA_WORKSPACE",
            ) from exc

    def partition(self, day: date) -> str:
        return f"{self.root}/{PARTITION_PREFIX}{day.isoformat()}"

    def parquet_path(self, day: date, stem: str) -> str:
        return f"{self.partition(day)}/{stem}.parquet"

    def spool_partition(self, day: date) -> Path:
        return self.spool / f"{PARTITION_PREFIX}{day.isoformat()}"

    def list_parquet(self) -> list[ParquetEntry]:
        """Every finished Parquet file, sorted by path; temporary files are left out."""
        from pyarrow import fs as pafs

        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
        except OSError as exc:
            raise WorkspaceError(
                f"cannot list the event log at {self.root}: {exc}",
                fix="check that the folder exists and is readable",
            ) from exc
        entries: list[ParquetEntry] = []
        for info in infos:
            match = _PARTITION_RE.match(info.base_name)
            if info.type != pafs.FileType.Directory or match is None:
                continue
            day = date.fromisoformat(match.group(1))
            for file in self.fs.get_file_info(pafs.FileSelector(info.path, allow_not_found=True)):
                if _is_finished_parquet(file.base_name) and file.type == pafs.FileType.File:
                    entries.append(ParquetEntry(file.path, day, file.size or 0, file.mtime_ns or 0))
        return sorted(entries, key=lambda entry: entry.path)

    def list_spool(self) -> list[SpoolEntry]:
        """Every JSON-lines segment in the spool, sorted by path."""
        entries: list[SpoolEntry] = []
        if not self.spool.is_dir():
            return entries
        for folder in sorted(self.spool.iterdir()):
            match = _PARTITION_RE.match(folder.name)
            if match is None or not folder.is_dir():
                continue
            day = date.fromisoformat(match.group(1))
            for path in sorted(folder.glob(f"{SEGMENT_PREFIX}*.jsonl")):
                entries.append(SpoolEntry(path, day))
        return entries


def _is_finished_parquet(name: str) -> bool:
    return name.endswith(".parquet") and not name.startswith((".", "_"))
