"""Temporal activities: every side effect of a workflow (Kafka, PostgreSQL, Temporal calls).

Each is idempotent, so Temporal's retries never create a second effect.
"""
