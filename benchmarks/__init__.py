"""Reproducible benchmarks of devora_lab: ``python -m benchmarks [--quick] [--only NAME]``.

Every ``bench_*.py`` module here registers its benchmarks with ``harness.benchmark``; the
runner prints one shared table (``table.py``) and writes it to ``results.md``.
"""
