"""``kafkaorg db``: schema migrations."""

from __future__ import annotations

import typer
from sqlalchemy.exc import OperationalError

from kafkaorg.cli._common import PG_UNREACHABLE, console, settings
from kafkaorg.db.migrate import upgrade_to_head
from kafkaorg.errors import ServiceUnavailableError

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade() -> None:
    """Apply every Alembic migration up to the newest."""
    try:
        upgrade_to_head(settings().database_url)
    except OperationalError:
        raise ServiceUnavailableError(PG_UNREACHABLE) from None
    console.print("schema is up to date")
