"""A throwaway PostgreSQL server in a temporary folder (``initdb`` then ``pg_ctl``), for the tests
and the benchmarks: the PostgreSQL store, the Procrastinate workers and the shared rate limits
run against a real server, never a fake.

``PostgresServer(folder).start()`` initialises a cluster in ``folder``, starts it on a free port
listening only on its own Unix socket folder and 127.0.0.1, and returns itself; ``url`` is a
``postgresql://`` URL for psycopg; ``create_database(name)`` gives each test its own database;
``stop()`` stops it. Run as root, the server runs as the ``postgres`` system user (PostgreSQL
refuses to run as root), which Debian's ``postgresql`` package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from hub.store import _pid_alive


class PostgresMissing(RuntimeError):
    pass


def pg_bin(name: str) -> str:
    """The path of a PostgreSQL server program (``initdb``, ``pg_ctl``), on PATH or where
    Debian puts it (``/usr/lib/postgresql/<version>/bin``), newest version first."""
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if os.path.exists(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise PostgresMissing(f"PostgreSQL's {name} was not found: install the server "
                          "(apt-get install -y postgresql)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reap_orphans() -> list[str]:
    """Stop and remove the servers of processes that died without stopping theirs (a test run
    killed by a timeout): each server's folder names its owner's pid. Returns the folders removed."""
    import tempfile
    removed = []
    for folder in glob.glob(os.path.join(tempfile.gettempdir(), "msp-hub-pg-*")):
        try:
            owner = int(Path(folder, "owner.pid").read_text())
        except (OSError, ValueError):
            continue   # being set up, or not ours
        if _pid_alive(owner):
            continue
        server = PostgresServer.__new__(PostgresServer)
        server.folder, server.data = Path(folder), Path(folder) / "data"
        server.user = "postgres" if os.geteuid() == 0 else None
        server.stop()
        removed.append(folder)
    return removed


class PostgresServer:
    def __init__(self, folder: str | os.PathLike | None = None, *, port: int | None = None):
        self.user = "postgres" if os.geteuid() == 0 else None   # the server's system user when we are root
        if folder is None or self.user:
            # The postgres user must reach the folder: pytest's and most temporary folders of
            # root are private (0700), so the cluster gets its own folder in the system's /tmp.
            import tempfile
            folder = tempfile.mkdtemp(prefix="msp-hub-pg-")
            os.chmod(folder, 0o755)
        self.folder = Path(folder)
        self.data = self.folder / "data"
        self.sockets = self.folder / "sockets"
        self.port = port or free_port()
        self.role = "hub"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")
        return done

    def start(self) -> "PostgresServer":
        reap_orphans()
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "owner.pid").write_text(str(os.getpid()))
        self.sockets.mkdir(exist_ok=True)
        if self.user:
            shutil.chown(self.folder, self.user)
            shutil.chown(self.sockets, self.user)
        if not (self.data / "PG_VERSION").exists():
            self._run(pg_bin("initdb"), "-D", str(self.data), "-U", self.role, "--auth=trust", "-E", "UTF8",
                      "--no-sync", "--no-locale")
        options = (f"-p {self.port} -k {self.sockets} -h 127.0.0.1 -c fsync=off -c synchronous_commit=off "
                   f"-c full_page_writes=off -c max_connections=200")
        done = self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "server.log"),
                         "-o", options, "-w", "-t", "60", "start", check=False)
        if done.returncode != 0:
            log = (self.folder / "server.log").read_text() if (self.folder / "server.log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {done.stderr.strip()} {log[-2000:]}")
        self._wait()
        return self

    def _wait(self, timeout: float = 30.0) -> None:
        import psycopg
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.dsn("postgres")).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.role}@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        return self.dsn("postgres")

    def create_database(self, name: str) -> str:
        """A new empty database (dropped first if it exists); returns its URL."""
        import psycopg
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self, *, remove: bool = True) -> None:
        self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        if remove:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
