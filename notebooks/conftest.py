"""The curated notebooks under nbval: each runs top to bottom against one small demo workspace.

``pytest`` collects ``notebooks/*.ipynb`` (``testpaths`` and ``--nbval-lax`` in
pyproject.toml): every cell must run without an error, and cells whose first line is
``# NBVAL_CHECK_OUTPUT`` must also reproduce their stored output.

The workspace is built once per session, just before the first notebook cell runs, so a
run that collects no notebook never pays for it. nbval's kernels are not pytest functions
and take no fixtures: they inherit the environment at kernel start, which is why the
workspace reaches them through ``DEVORA_WORKSPACE`` (the notebooks' ``workspace = None``
parameter reads it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_ENV = "DEVORA_WORKSPACE"
_built: dict[str, Path] = {}
_previous: dict[str, str | None] = {}


def _build_workspace() -> Path:
    from devora_lab.demo import run_demo
    from devora_lab.workspace import Workspace

    root = Path(tempfile.mkdtemp(prefix="devora-nbval-")) / "workspace"
    run_demo(Workspace(root), days=3, calls_per_day=300, live_tasks=40, reports=None,
             progress=False)
    return root


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before the first notebook's kernel starts (nbval starts it in the notebook's setup,
    which runs after this hook): build the workspace and export it."""
    if "workspace" in _built:
        return
    _built["workspace"] = _build_workspace()
    _previous[_ENV] = os.environ.get(_ENV)
    os.environ[_ENV] = str(_built["workspace"])


def pytest_sessionfinish(session: pytest.Session) -> None:
    root = _built.pop("workspace", None)
    if root is None:
        return
    previous = _previous.pop(_ENV, None)
    if previous is None:
        os.environ.pop(_ENV, None)
    else:
        os.environ[_ENV] = previous
    shutil.rmtree(root.parent, ignore_errors=True)
