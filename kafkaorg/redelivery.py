"""Pure helpers for ``kafkaorg replay``: parse times, plan offset ranges, mark records.

Not to be confused with ``kafkaorg/history_replay.py``, which replays *workflow
histories* (a determinism check). Here records of a topic are re-delivered to
one agent on purpose; nothing in this module touches a broker or Temporal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

REPLAY_MARK_PREFIX = "replay:"

_RELATIVE_RE = re.compile(r"^(\d+)\s*(s|m|h|d|w)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def replay_mark(run_id: str) -> str:
    """The mark every record of one replay run carries (``kafkaorg.mark`` header on outputs)."""
    return f"{REPLAY_MARK_PREFIX}{run_id}"


def parse_time(text: str, now: datetime) -> datetime:
    """``2026-11-24T10:00:00Z`` (ISO-8601; no zone means UTC) or ``10m``/``2h``/``3d`` ago.

    Raises:
        ValueError: with a message meant for the user.
    """
    value = text.strip()
    relative = _RELATIVE_RE.match(value)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return now - timedelta(**{_UNITS[unit]: amount})
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use ISO-8601 (2026-11-24T10:00:00Z) "
            "or a duration ago such as 30s, 10m, 2h, 3d, 1w"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_until(text: str, now: datetime) -> int | datetime:
    """``--until``: a plain number is an offset, anything else a time."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    return parse_time(value, now)


def to_millis(when: datetime) -> int:
    return int(when.timestamp() * 1000)


@dataclass(frozen=True)
class PartitionRange:
    """Offsets ``[start, end)`` of one partition to replay."""

    partition: int
    start: int
    end: int

    @property
    def count(self) -> int:
        return max(0, self.end - self.start)


def plan_range(
    partition: int,
    low: int,
    high: int,
    start: int | None,
    until_offset: int | None = None,
    until_time_offset: int | None = None,
) -> PartitionRange:
    """The half-open range to read from one partition.

    Args:
        partition: the partition number.
        low, high: the partition's watermarks now (records appended later are not replayed).
        start: the first offset wanted (``--from-offset`` or the offset for ``--since``), or
            None when no record of the partition is recent enough.
        until_offset: ``--until`` as an offset: stop before it.
        until_time_offset: ``--until`` as a time, already looked up: the first offset at or
            after that time (None: every record is older, so read to the end).
    """
    if start is None:
        return PartitionRange(partition, high, high)
    begin = max(start, low)
    end = high
    if until_offset is not None:
        end = min(end, until_offset)
    if until_time_offset is not None:
        end = min(end, until_time_offset)
    return PartitionRange(partition, begin, max(begin, end))
