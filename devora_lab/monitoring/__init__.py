"""Monitoring: alerts, health checks, metrics export."""
