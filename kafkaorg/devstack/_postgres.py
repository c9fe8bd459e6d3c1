"""PostgreSQL: Debian's server running a cluster of the project's own, or a server that runs.

initdb and postgres refuse to run as root, so as root they run as the ``postgres`` OS user,
which must be able to reach the data directory. Under ``/root`` (mode 700) it cannot, so the
cluster then lives under ``/var/lib/kafkaorg/<hash of the state dir>/`` instead; /root's
permissions are never changed.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import signal
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from kafkaorg.config import Settings

from ._base import Port, Service
from ._models import StackError
from ._processes import port_open, spawn

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
_SUPERUSER = "postgres"
_FALLBACK_ROOT = Path("/var/lib/kafkaorg")
_MISSING = "PostgreSQL (initdb, postgres) is not installed: run scripts/install.sh"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for "/.s.PGSQL.<port>"


def _bin_dir() -> Path | None:
    """The newest Debian server's bin dir (/usr/lib/postgresql/<ver>/bin), else PATH's."""
    candidates: list[tuple[int, Path]] = []
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        for child in root.iterdir():
            binary = child / "bin"
            if re.fullmatch(r"\d+", child.name) and (binary / "initdb").is_file():
                candidates.append((int(child.name), binary))
    if candidates:
        return max(candidates)[1]
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


class PostgresService(Service):
    name = "postgres"
    title = "PostgreSQL"
    timeout_s = 60.0
    marker = "postgres -D"
    stop_signal = signal.SIGINT  # "fast" shutdown; SIGTERM would wait for every client to leave
    stop_timeout_s = 30.0

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        url = make_url(settings.database_url)
        self.host = url.host or "127.0.0.1"
        self.port = url.port or 5432
        self.user = url.username or "kafkaorg"
        self.password = url.password
        self.database = url.database or self.user
        self.conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.is_root = os.geteuid() == 0
        self.preferred_data_dir = settings.state_dir / "postgres" / "pgdata"
        digest = hashlib.sha256(str(settings.state_dir.resolve()).encode()).hexdigest()[:12]
        self.fallback_data_dir = _FALLBACK_ROOT / digest / "pgdata"
        self.last_error = ""
        self._data_dir: Path | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def local(self) -> bool:
        return self.host in _LOCAL_HOSTS

    # -- where the cluster lives -----------------------------------------------------------

    def _as_postgres(self) -> list[str]:
        """Command prefix that drops root to the postgres OS user (exec, so pids stay ours)."""
        if not self.is_root:
            return []
        return ["setpriv", f"--reuid={_SUPERUSER}", f"--regid={_SUPERUSER}", "--init-groups", "--"]

    def _postgres_reaches(self, directory: Path) -> bool:
        result = subprocess.run(
            [*self._as_postgres(), "test", "-x", str(directory)],
            stdin=subprocess.DEVNULL, capture_output=True, check=False,
        )  # fmt: skip
        return result.returncode == 0

    @property
    def data_dir(self) -> Path:
        """The preferred dir under state_dir if postgres can reach it, else the fallback.

        The choice sticks once a cluster exists, so the stack never forgets its data.
        """
        if self._data_dir is not None:
            return self._data_dir
        chosen = self.preferred_data_dir
        if self.is_root and not (self.preferred_data_dir / "PG_VERSION").is_file():
            if (self.fallback_data_dir / "PG_VERSION").is_file():
                chosen = self.fallback_data_dir
            else:
                parent = self.preferred_data_dir.parent
                parent.mkdir(parents=True, exist_ok=True)
                if not self._postgres_reaches(parent):
                    chosen = self.fallback_data_dir
        self._data_dir = chosen
        self.pid_file.marker = f"postgres -D {chosen}"
        return chosen

    def our_pid(self) -> int | None:
        _ = self.data_dir  # settles the marker
        return super().our_pid()

    # -- checks ----------------------------------------------------------------------------

    def _connect_app(self) -> bool:
        try:
            with psycopg.connect(self.conninfo, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            self.last_error = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            return False
        return True

    def _superuser(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=self.host, port=self.port, user=_SUPERUSER, dbname="postgres",
            connect_timeout=3, autocommit=True,
        )  # fmt: skip

    def healthy(self) -> bool:
        if not port_open(self.host, self.port):
            self.last_error = ""
            return False
        return self._connect_app()

    def ready(self) -> bool:
        """Ours answers as superuser (the app role may not exist yet); others as the app."""
        if self.our_pid() is None:
            return self.healthy()
        try:
            with self._superuser() as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def preflight(self) -> None:
        if not self.local:
            return
        if _bin_dir() is None:
            raise StackError(_MISSING)
        if self.is_root:
            try:
                pwd.getpwnam(_SUPERUSER)
            except KeyError:
                raise StackError(
                    "there is no postgres OS user to run PostgreSQL as: run scripts/install.sh"
                ) from None
            if shutil.which("setpriv") is None:
                raise StackError("setpriv (util-linux) is missing: apt-get install util-linux")

    def ports(self) -> list[Port]:
        return [Port(self.host, self.port, "PostgreSQL", "KAFKAORG_DATABASE_URL")]

    # -- start -----------------------------------------------------------------------------

    def _prepare_dirs(self, data: Path) -> None:
        if data == self.fallback_data_dir:
            _FALLBACK_ROOT.mkdir(mode=0o755, exist_ok=True)
            data.parent.mkdir(mode=0o755, exist_ok=True)
        data.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.is_root:
            entry = pwd.getpwnam(_SUPERUSER)
            os.chown(data, entry.pw_uid, entry.pw_gid)

    def _initdb(self, bin_dir: Path, data: Path) -> None:
        if (data / "PG_VERSION").is_file():
            return
        self._prepare_dirs(data)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            result = subprocess.run(
                [*self._as_postgres(), str(bin_dir / "initdb"), "-D", str(data),
                 "-U", _SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-locale",
                 "--no-instructions"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=data, check=False,
            )  # fmt: skip
        if result.returncode != 0:
            raise StackError(f"initdb failed for {data}; see {self.log_file}")

    def launch(self) -> None:
        if not self.local:
            raise StackError(
                f"the database at {self.address} (KAFKAORG_DATABASE_URL) does not answer:"
                f" {self.last_error or 'nothing listens'}; start it or unset KAFKAORG_DATABASE_URL"
            )
        bin_dir = _bin_dir()
        if bin_dir is None:
            raise StackError(_MISSING)
        data = self.data_dir
        self._initdb(bin_dir, data)
        socket_dir = str(data) if len(str(data)) <= _SOCKET_PATH_MAX - 16 else ""
        spawn(
            [*self._as_postgres(), str(bin_dir / "postgres"), "-D", str(data),
             "-c", f"listen_addresses={self.host}", "-p", str(self.port),
             "-c", f"unix_socket_directories={socket_dir}",
             "-c", "max_connections=200"],
            log_file=self.log_file, pid_file=self.pid_file, cwd=data,
        )  # fmt: skip

    def after_healthy(self) -> None:
        """Create (or re-password) the role and database named in the URL, on our cluster."""
        if self.our_pid() is None:
            return
        role = sql.Identifier(self.user)
        password = sql.Literal(self.password) if self.password else sql.SQL("NULL")
        with self._superuser() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.user,))
            verb = "ALTER" if exists.fetchone() else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE {} LOGIN CREATEDB PASSWORD {}").format(role, password)
            )
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
            if found.fetchone() is None:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(self.database), role
                    )
                )

    def detail(self, healthy: bool, pid: int | None) -> str:
        if pid is None:
            if healthy:
                return "running (not started by kafkaorg dev; left alone)"
            return "down" if not self.last_error else f"down: {self.last_error}"
        base = super().detail(healthy, pid)
        where = f"data {self.data_dir}"
        if self.data_dir == self.fallback_data_dir:
            where += " (fallback: the postgres user cannot reach the state dir)"
        return f"{base}; {where}"
