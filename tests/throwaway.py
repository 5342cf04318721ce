"""Real, throwaway Postgres and Redis servers that fault-injection tests can stop and restart."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import psycopg
from alembic import command
from alembic.config import Config
from psycopg import sql

from bench.harness import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
POSTGRES_USER = "postgres"
READY_TIMEOUT_SECONDS = 30.0
LOG_TAIL_CHARS = 3000
# A unix socket path must fit in sun_path (108 bytes); leave room for "/sock/.s.PGSQL.65535".
MAX_ROOT_PATH_CHARS = 80

StopMode = Literal["fast", "immediate"]


class ThrowawayError(RuntimeError):
    """A throwaway server failed to start, stop or become ready."""


def _tail(path: Path) -> str:
    """The last few thousand characters of a log file, or a note that it is missing."""
    if not path.exists():
        return f"(no log at {path})"
    return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]


def migrate(database_url: str) -> None:
    """Run the project's Alembic migrations to head on the database at ``database_url``."""
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


def _postgres_bin_dir() -> Path:
    """The bin directory of the highest Debian-packaged PostgreSQL version."""
    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    if not candidates:
        raise ThrowawayError("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
    return max(candidates, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1)


def _reachable_by_others(path: Path) -> bool:
    """Whether a non-root user can traverse every directory down to ``path``."""
    resolved = path.resolve()
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in (resolved, *resolved.parents))


def _cluster_parent(base_dir: Path) -> Path:
    """``base_dir`` if the postgres user can reach it with a short enough path, else the tmp dir."""
    # pytest's tmp_path sits under /tmp/pytest-of-root (mode 0700), which postgres cannot enter.
    for candidate in (base_dir, Path(tempfile.gettempdir()), Path("/tmp")):
        if (
            candidate.is_dir()
            and len(str(candidate.resolve())) < MAX_ROOT_PATH_CHARS - 25
            and _reachable_by_others(candidate)
        ):
            return candidate
    raise ThrowawayError(f"no directory the {POSTGRES_USER} user can reach for the cluster")


class _Server:
    """Started by ``with``, and always closed when the block ends, even if starting failed."""

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ThrowawayPostgres(_Server):
    """A Postgres cluster of the test's own, run as the postgres OS user, stoppable at will."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.bin_dir = _postgres_bin_dir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="throwaway-pg-", dir=_cluster_parent(base_dir)))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log_path = self.root / "postgres.log"
        self._initialised = False

    @property
    def url(self) -> str:
        """The libpq URL of the ``postgres`` database."""
        return self.database_url("postgres")

    def database_url(self, dbname: str) -> str:
        """The libpq URL of database ``dbname`` on this cluster."""
        return f"postgresql://{POSTGRES_USER}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL binary as the postgres user; fail with its output and the log tail."""
        # initdb and postgres refuse to run as root.
        cmd = ["runuser", "-u", POSTGRES_USER, "--", str(self.bin_dir / args[0]), *args[1:]]
        # cwd: the postgres user must be able to stat its working directory.
        result = subprocess.run(
            cmd, cwd=self.root, capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise ThrowawayError(
                f"{' '.join(cmd)} exited {result.returncode}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}\n"
                f"server log tail:\n{_tail(self.log_path)}"
            )
        return result

    def _initdb(self) -> None:
        """Create the cluster and write its settings."""
        user = pwd.getpwnam(POSTGRES_USER)
        os.chmod(self.root, 0o755)
        for directory in (self.data_dir, self.socket_dir):
            directory.mkdir(mode=0o700)
            os.chown(directory, user.pw_uid, user.pw_gid)
        self.log_path.touch()
        os.chown(self.log_path, user.pw_uid, user.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            POSTGRES_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",  # throwaway data: skip the fsync of every new file
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": "200",
            # Durability is irrelevant here; a crash-stop still keeps data in the page cache.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "log_min_messages": "warning",
            "log_checkpoints": "off",  # on by default since 15; noise in a test log
            "log_line_prefix": "'%m [%p] '",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# throwaway test cluster\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        self._initialised = True

    def start(self) -> None:
        """Start the server (creating the cluster on first start) and wait until it serves."""
        if not self._initialised:
            self._initdb()
        self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            str(int(READY_TIMEOUT_SECONDS)),
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Wait until a TCP connection to the server succeeds."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise ThrowawayError(
                        f"postgres on port {self.port} not ready: {exc}\n"
                        f"server log tail:\n{_tail(self.log_path)}"
                    ) from exc
                time.sleep(0.05)

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server: ``fast`` disconnects clients cleanly, ``immediate`` is a crash."""
        self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", mode, "-w")

    def restart(self, down_seconds: float = 0.0, mode: StopMode = "fast") -> None:
        """Stop, stay down ``down_seconds``, then start again on the same port and data."""
        self.stop(mode)
        time.sleep(down_seconds)
        self.start()

    def is_running(self) -> bool:
        """Whether a postmaster is running on this cluster's data directory."""
        if not (self.data_dir / "postmaster.pid").exists():
            return False
        cmd = ["runuser", "-u", POSTGRES_USER, "--", str(self.bin_dir / "pg_ctl"), "status"]
        result = subprocess.run(
            [*cmd, "-D", str(self.data_dir)], cwd=self.root, capture_output=True, check=False
        )
        return result.returncode == 0

    def create_database(self, name: str) -> str:
        """Create database ``name``; return its URL."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_url(name)

    def migrate(self, dbname: str) -> None:
        """Run the project's Alembic migrations to head on database ``dbname``."""
        migrate(self.database_url(dbname))

    def _kill(self) -> None:
        """Crash-stop the server, and SIGKILL the postmaster if pg_ctl cannot."""
        if not self.is_running():
            return
        with contextlib.suppress(ThrowawayError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "immediate", "-w")
            return
        pid_file = self.data_dir / "postmaster.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGKILL)

    def close(self) -> None:
        """Make sure no server is left running; keep the log in ``base_dir``, drop the cluster."""
        try:
            self._kill()
        finally:
            if self.log_path.exists() and self.base_dir.is_dir():
                shutil.copyfile(self.log_path, self.base_dir / f"postgres-{self.port}.log")
            shutil.rmtree(self.root, ignore_errors=True)


class ThrowawayRedis(_Server):
    """A redis-server of the test's own, without persistence, stoppable at will."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.port = free_port()
        self.log_path = base_dir / f"redis-{self.port}.log"
        # Output from before redis opens its logfile (bad arguments, a taken port) lands here.
        self.output_path = base_dir / f"redis-{self.port}.out"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The redis URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _log_tail(self) -> str:
        """The tails of redis's logfile and its early output."""
        return f"{_tail(self.output_path)}\n{_tail(self.log_path)}"

    def start(self) -> None:
        """Start redis-server in the foreground and wait until it answers PING."""
        if self.process is not None and self.process.poll() is None:
            raise ThrowawayError(f"redis on port {self.port} is already running")
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.base_dir),
            "--logfile",
            str(self.log_path),
        ]
        with self.output_path.open("ab") as out:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        self._wait_ready()

    def _ping(self) -> bool:
        """Whether the server answers an inline PING on a fresh socket."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _wait_ready(self) -> None:
        """Wait until PING succeeds, failing early if the process dies."""
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not self._ping():
            if self.process.poll() is not None:
                raise ThrowawayError(
                    f"redis-server exited {self.process.returncode}\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                raise ThrowawayError(f"redis on port {self.port} not ready\n{self._log_tail()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server with SIGTERM and wait for it to exit."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop, stay down ``down_seconds``, then start again on the same port (empty)."""
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def close(self) -> None:
        """Kill the server if it is still running."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
