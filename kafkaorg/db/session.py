"""One short-lived session for a service call that reads or checks PostgreSQL state.

The service layer (``kafkaorg/dlq.py``, ``kafkaorg/record_replay.py``) opens a session
per call, so a CLI command or a console route holds no connection between calls, and an
unreachable database is one clear line rather than a driver traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from kafkaorg.config import Settings
from kafkaorg.db.engine import create_engine, create_sessionmaker
from kafkaorg.errors import ServiceUnavailableError

PG_UNREACHABLE = (
    "PostgreSQL is not reachable at KAFKAORG_DATABASE_URL (start it with `kafkaorg dev up`)"
)


@contextmanager
def db_session(cfg: Settings) -> Iterator[Session]:
    """A session on a one-connection engine, disposed on exit."""
    engine = create_engine(cfg.database_url, pool_size=1)
    try:
        with create_sessionmaker(engine)() as session:
            yield session
    except OperationalError:
        raise ServiceUnavailableError(PG_UNREACHABLE) from None
    finally:
        engine.dispose()
