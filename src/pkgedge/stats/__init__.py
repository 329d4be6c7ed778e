"""Counters shared by all workers, and their export (JSON, Prometheus)."""

from pkgedge.stats.counters import COUNTERS, Counters

__all__ = ["COUNTERS", "Counters"]
