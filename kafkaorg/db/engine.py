"""Engine and session factories; only activities, the bridge and the CLI use them."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy import create_engine as _create_engine
from sqlalchemy.orm import Session, sessionmaker


def create_engine(url: str, *, pool_size: int = 5) -> Engine:
    return _create_engine(url, pool_size=pool_size, pool_pre_ping=True, future=True)


def create_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
