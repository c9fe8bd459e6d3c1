"""``kafkaorg db``: schema migrations."""

from __future__ import annotations

import typer
from sqlalchemy.exc import OperationalError

from kafkaorg.cli._common import PG_UNREACHABLE, console, settings
from kafkaorg.db.migrate import upgrade_to_head
from kafkaorg.db.session import db_session
from kafkaorg.errors import ServiceUnavailableError
from kafkaorg.payloads import collect, longest_retention

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade() -> None:
    """Apply every Alembic migration up to the newest."""
    try:
        upgrade_to_head(settings().database_url)
    except OperationalError:
        raise ServiceUnavailableError(PG_UNREACHABLE) from None
    console.print("schema is up to date")


@db_app.command("collect-payloads")
def collect_payloads() -> None:
    """Delete large payloads no record has pointed at for longer than the longest topic
    retention (they were stored by reference; their records are gone from Kafka)."""
    with db_session(settings()) as session:
        deleted = collect(session)
    console.print(
        f"deleted {deleted} payload(s) unreferenced for over {longest_retention().days} days"
    )
