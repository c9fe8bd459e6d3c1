"""Errors that reach the user as one clear line (see the CLI's exit codes)."""

from __future__ import annotations


class KafkaorgError(Exception):
    """Base for errors with a message meant for people, not a traceback."""

    exit_code = 1


class BadInputError(KafkaorgError):
    """What the user gave is wrong: exit 2."""

    exit_code = 2


class ConfigError(BadInputError):
    """A ``KAFKAORG_*`` setting is wrong or missing: exit 2, naming the variable."""


class ServiceUnavailableError(KafkaorgError):
    """A service (Kafka, Temporal, PostgreSQL) did not answer: exit 1."""

    exit_code = 1
