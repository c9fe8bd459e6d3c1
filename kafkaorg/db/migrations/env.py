"""Alembic environment: URL from the caller (settings), types compared on autogenerate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from kafkaorg.config import get_settings
from kafkaorg.db import models  # noqa: F401  (registers tables on Base.metadata)
from kafkaorg.db.base import Base

config = context.config
url = config.attributes.get("database_url") or get_settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
