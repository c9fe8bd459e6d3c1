"""Temporal workflows: deterministic code only (no I/O; side effects go through activities)."""
