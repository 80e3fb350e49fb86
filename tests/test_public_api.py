"""The public surface: what __all__ promises exists, and the README stays true to the code."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import devora_lab
from devora_lab.events.schema import COLUMNS

README = Path(__file__).resolve().parents[1] / "README.md"
MODULES = ["devora_lab", "devora_lab.errors", "devora_lab.config", "devora_lab.workspace",
           "devora_lab.events", "devora_lab.events.store", "devora_lab.events.writer",
           "devora_lab.events.traces", "devora_lab.llm.client", "devora_lab.llm.types",
           "devora_lab.llm.policy", "devora_lab.llm.pricing", "devora_lab.llm.tokens",
           "devora_lab.cache", "devora_lab.cache.keys", "devora_lab.cache.analysis",
           "devora_lab.cache.semantic", "devora_lab.prompts", "devora_lab.lab",
           "devora_lab.agents", "devora_lab.team", "devora_lab.recording"]


@pytest.mark.parametrize("name", MODULES)
def test_every_name_in_all_exists(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported, f"{name} has no curated __all__"
    for symbol in exported:
        assert getattr(module, symbol) is not None, f"{name}.{symbol}"


def test_top_level_api_is_short_and_sorted() -> None:
    assert sorted(devora_lab.__all__) == list(devora_lab.__all__)
    assert len(devora_lab.__all__) <= 15


def test_import_is_light() -> None:
    code = ("import sys, devora_lab; heavy = {'duckdb', 'pyarrow', 'pandas', 'polars', 'httpx',"
            " 'pydantic', 'tiktoken'} & set(sys.modules); print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_readme_starts_with_the_two_commands() -> None:
    top = README.read_text().splitlines()[:5]
    assert any("make demo" in line and "make test" in line for line in top)


def test_readme_documents_every_schema_column() -> None:
    text = README.read_text()
    for column in COLUMNS:
        row = f"| `{column.name}` | {column.duckdb_type} |"
        assert row in text, f"README schema table lacks {column.name}"


def test_monitoring_exports_resolve_lazily() -> None:
    code = ("import sys, devora_lab.monitoring as m; "
            "before = {'scipy', 'prometheus_client'} & set(sys.modules); "
            "missing = [n for n in m.__all__ if getattr(m, n, None) is None]; "
            "print(sorted(before), missing, dir(m) == sorted(m.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[] [] True"


def test_readme_lists_every_metric() -> None:
    from devora_lab.monitoring.metrics import METRICS

    text = README.read_text()
    missing = [name for name in METRICS if f"`{name}`" not in text]
    assert not missing, f"README's metric table lacks {missing}"


def test_notebook_helpers_resolve_lazily() -> None:
    code = ("import sys, devora_lab.notebook as n; "
            "before = {'altair', 'ipywidgets', 'papermill'} & set(sys.modules); "
            "missing = [x for x in n.__all__ if getattr(n, x, None) is None]; "
            "print(sorted(before), missing)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[] []"
