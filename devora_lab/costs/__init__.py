"""Costs: breakdowns, re-pricing, budgets, forecasts and recommendations over the event log."""
