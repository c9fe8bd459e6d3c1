"""Schema migrations on the real PostgreSQL: upgrades keep data, and match the models."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, make_url, text

from kafkaorg.config import Settings
from kafkaorg.db.base import Base
from kafkaorg.db.migrate import alembic_config

pytestmark = pytest.mark.integration


@pytest.fixture
def schema_url(stack: Settings) -> Iterator[str]:
    """A database URL whose search_path is a fresh schema: migrations run there in isolation."""
    schema = f"migtest_{uuid.uuid4().hex[:10]}"
    engine = create_engine(stack.database_url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(stack.database_url).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def test_foundation_schema_upgrades_to_head_keeping_its_rows(schema_url: str) -> None:
    config = alembic_config(schema_url)
    command.upgrade(config, "0001")
    engine = create_engine(schema_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO orgs (name, status, spec, workflow_id) "
                "VALUES ('acme', 'running', '{}', 'org:acme')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO agents (org_id, name, kind, status, version, spec, workflow_id) "
                "SELECT id, 'planner', 'echo', 'running', 3, '{}', 'agent:acme:planner' FROM orgs"
            )
        )
    command.upgrade(config, "head")
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT name, version, created_by, spawn_depth, parent_agent FROM agents")
        ).one()
        assert tuple(row) == ("planner", 3, "spec", 0, None)
        tables = set(
            conn.execute(
                text(
                    "SELECT table_name FROM information_schema.tables"
                    " WHERE table_schema = current_schema()"
                )
            ).scalars()
        )
    assert {"tools", "tool_versions", "record_schemas"} <= tables
    # The constraints keep the state sane: an unknown status is refused.
    with pytest.raises(Exception, match="ck_agents_status"), engine.begin() as conn:
        conn.execute(text("UPDATE agents SET status = 'sleeping'"))
    command.downgrade(config, "0001")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM agents")).scalar() == 1
    engine.dispose()


def test_llm_usage_table_upgrades_and_downgrades(schema_url: str) -> None:
    config = alembic_config(schema_url)
    command.upgrade(config, "head")
    engine = create_engine(schema_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO orgs (name, status, spec, workflow_id) "
                "VALUES ('acme', 'running', '{}', 'org:acme')"
            )
        )
        insert_usage = text(
            "INSERT INTO llm_usage (org_id, agent, workflow_id, call_id, model, prompt_tokens,"
            " completion_tokens, total_tokens)"
            " SELECT id, 'planner', 'agent:acme:planner', 'run/1', 'm', 11, 7, 18 FROM orgs"
        )
        conn.execute(insert_usage)
    # One row per model call: a second row with the same call id is refused.
    with pytest.raises(Exception, match="uq_llm_usage_call_id"), engine.begin() as conn:
        conn.execute(insert_usage)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM orgs"))  # the org's usage goes with it
        assert conn.execute(text("SELECT count(*) FROM llm_usage")).scalar() == 0

    def tables() -> set[str]:
        with engine.connect() as conn:
            return set(
                conn.execute(
                    text(
                        "SELECT table_name FROM information_schema.tables"
                        " WHERE table_schema = current_schema()"
                    )
                ).scalars()
            )

    assert "llm_usage" in tables()
    command.downgrade(config, "0002")
    assert "llm_usage" not in tables()
    assert {"orgs", "tools", "tool_versions"} <= tables()
    command.upgrade(config, "head")  # and back up again
    assert "llm_usage" in tables()
    engine.dispose()


def test_the_migrations_build_exactly_the_schema_the_models_declare(schema_url: str) -> None:
    """A model changed without a migration (or the reverse) fails here, not in production."""
    command.upgrade(alembic_config(schema_url), "head")
    engine = create_engine(schema_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []
