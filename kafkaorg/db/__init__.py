"""PostgreSQL state: models, engine factories and migrations."""

from kafkaorg.db.engine import create_engine, create_sessionmaker
from kafkaorg.db.models import Agent, Org, Subscription, Topic

__all__ = ["Agent", "Org", "Subscription", "Topic", "create_engine", "create_sessionmaker"]
