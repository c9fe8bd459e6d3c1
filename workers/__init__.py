"""Processes that host workflows and activities."""
