"""Helpers the workbench notebooks use: widgets, altair charts, and the report runner."""
