"""Scratch databases, child processes, CPU accounting and percentiles for the benchmarks."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn
from urllib.parse import urlencode

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from app.devserver import procfile_web_options

REPO_ROOT = Path(__file__).resolve().parent.parent
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
JWT_SECRET = "bench-secret-" + "x" * 40
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS_DIR = REPO_ROOT / "bench" / "results"
QUIET_BUSY_PERCENT = 50  # of one core: the most the machine may use before a phase starts

# A benchmark runs as a file (python bench/x.py): its sys.path[0] is bench/, and the package
# of doubles it shares with the tests (doubles/) is found only from the repository root.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def add_database_url_option(parser: argparse.ArgumentParser) -> None:
    """``--database-url``: the server a benchmark makes its scratch database on."""
    default = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    parser.add_argument("--database-url", default=default, help="server for the scratch DB")


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def run_main(main: Callable[[], int]) -> NoReturn:
    """Exit with ``main()``'s code; on Ctrl-C or SIGTERM (its context managers have cleaned up),
    130."""
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM cleans up like Ctrl-C
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; child processes stopped and scratch database dropped", file=sys.stderr)
        sys.exit(130)


def fresh_log_dir(log_dir: Path) -> Path:
    """``log_dir``, made if missing and emptied of the last run's process logs."""
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()
    return log_dir


def results_header(args: argparse.Namespace, *secret: str) -> dict[str, Any]:
    """The start of a benchmark's JSON: its options and the code under test. Not the database
    URL, nor the options named in ``secret``: they may hold a password."""
    hidden = {"database_url", *secret}
    shown = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    return {"args": {k: v for k, v in shown.items() if k not in hidden}, "source": source_version()}


def _shown_path(path: Path) -> Path:
    """``path`` relative to the repository when it lies inside it (shorter to read)."""
    absolute = path.resolve()
    return absolute.relative_to(REPO_ROOT) if absolute.is_relative_to(REPO_ROOT) else path


def write_results(results: Mapping[str, Any], path: Path, log_dir: Path | None = None) -> None:
    """Write a benchmark's ``results`` as JSON to ``path`` and say where they (and the process
    logs in ``log_dir``) are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    logs = f"; process logs in {_shown_path(log_dir)}/" if log_dir is not None else ""
    print(f"wrote {_shown_path(path)}{logs}")


@dataclass(frozen=True)
class BudgetRow:
    """One budget as docs/benchmarks.md shows it: the figure measured, the same-run baseline it
    is judged against (if any), their ratio, the budget, and whether it was met. A benchmark
    keeps its rows in its JSON under ``"rows"``, where ``python3 dev.py bench`` collects them."""

    what: str
    measured: str
    baseline: str
    ratio: float | None
    budget: str
    passed: bool


def budget_rows(*rows: BudgetRow) -> list[dict[str, Any]]:
    """``rows`` as they go into a benchmark's JSON."""
    return [asdict(row) for row in rows]


def system_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of the system's processes (web, dispatcher, alembic) in a benchmark:
    this one's, plus the database, test settings and ``extra``."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "APP_ENVIRONMENT": "test",
        "APP_JWT_SECRET": JWT_SECRET,
        "DISPATCHER_METRICS_PORT": "0",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def source_version() -> str:
    """The commit the code under test is at, marked when tracked files differ from it."""

    def git(*args: str) -> str:
        # --no-optional-locks: never take the index lock from under someone committing.
        argv = ["git", "--no-optional-locks", *args]
        return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else "")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def uvicorn_argv(app: str, port: int, *extra: str) -> list[str]:
    """uvicorn on loopback with the Procfile's options (as deployed: its WebSocket settings),
    without access logs (they would cost the web process CPU)."""
    options = procfile_web_options()
    argv = [sys.executable, "-m", "uvicorn", app, *options, *extra, "--host", "127.0.0.1"]
    return [*argv, "--port", str(port), "--log-level", "warning"]


def with_dbname(url: str, dbname: str) -> str:
    """``url`` pointing at another database, still as a URL (SQLAlchemy needs one)."""
    params = {k: str(v) for k, v in conninfo_to_dict(url).items()}
    params["dbname"] = dbname
    return "postgresql://?" + urlencode(params)


@contextmanager
def migrated_database(server_url: str, prefix: str) -> Iterator[str]:
    """A scratch database (see ``scratch_database``) with the schema migrated to head."""
    with scratch_database(server_url, prefix) as database_url:
        migrate(database_url, system_env(database_url))
        yield database_url


@contextmanager
def scratch_database(server_url: str, prefix: str, template: str | None = None) -> Iterator[str]:
    """A new database on the server, empty or a copy of database ``template``; dropped
    (connections and all) on the way out."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(create)
    try:
        yield with_dbname(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@dataclass
class Child:
    """A child process in its own session (Ctrl-C reaches only us; we stop it in order), its
    output in a log file. The tests' processes are these too (tests/harness.py)."""

    name: str
    process: subprocess.Popen[str]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 3000) -> str:
        return self.log()[-chars:]

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited ({self.process.returncode}):\n{self.log_tail()}"
            )

    def wait_for_log(self, text: str, *, count: int = 1, timeout: float = 20) -> None:
        """Wait until ``text`` has been logged ``count`` times."""
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count:
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {text!r} not logged\n{self.log_tail()}")
            time.sleep(0.05)

    def wait_for_http(self, url: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not answer {url}\n{self.log_tail()}")
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        return process_cpu_seconds(self.process.pid)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM, then SIGKILL after ``timeout`` s; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_child(
    name: str,
    args: Sequence[str],
    env: Mapping[str, str],
    log_dir: Path,
    *,
    pipes: bool = False,
    log_name: str | None = None,
) -> Child:
    """Start ``args``; output goes to a log file (``log_name``, default ``<name>.log``), or
    stdin/stdout are pipes when ``pipes``."""
    log_path = log_dir / (log_name or f"{name}.log")
    with log_path.open("a") as log:
        process = subprocess.Popen(
            list(args),
            env=dict(env),
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE if pipes else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipes else log,
            stderr=log if pipes else subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    return Child(name, process, log_path)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` has used so far (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def backends_cpu_seconds(dbname: str) -> float:
    """CPU time used so far by the live Postgres backends connected to ``dbname``."""
    total = 0.0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            title = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"postgres: ") and f" {dbname} ".encode() in title:
            total += process_cpu_seconds(int(proc.name))
    return total


def machine_ticks() -> list[int]:
    """/proc/stat's CPU line since boot: user, nice, system, idle, iowait, irq, softirq, steal."""
    return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent not idle since boot (all cores summed)."""
    ticks = machine_ticks()
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks) - idle) / TICKS_PER_SECOND


def steal_percent(before: list[int], after: list[int]) -> float:
    """Of the machine's CPU time between two ``machine_ticks()``, the share the hypervisor
    gave to other guests (steal): a virtual machine's cores are not all its own."""
    spent = [b - a for a, b in zip(before, after, strict=True)]
    return round(100 * spent[7] / max(sum(spent), 1), 1)


def cpu_snapshot(children: Mapping[str, Child], dbname: str) -> dict[str, float]:
    """CPU seconds used so far by each child, ``dbname``'s Postgres backends, this process
    ("driver") and the whole machine."""
    snapshot = {name: child.cpu_seconds() for name, child in children.items()}
    snapshot |= {"postgres": backends_cpu_seconds(dbname), "driver": time.process_time()}
    snapshot["machine"] = busy_cpu_seconds()
    return snapshot | {"wall": time.perf_counter()}


def cpu_percent(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU used between two snapshots, in % of one core (the machine's is out of 100 x cores)."""
    wall = after["wall"] - before["wall"]
    return {k: round(100 * (after[k] - before[k]) / wall, 1) for k in before if k != "wall"}


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def summarize_ms(seconds: Sequence[float]) -> dict[str, Any]:
    """n, min, p50, p90, p99 and max of latencies given in seconds, in milliseconds."""
    ordered = sorted(seconds)
    if not ordered:
        return {"n": 0}
    stats: dict[str, Any] = {"n": len(ordered), "min": ordered[0] * 1000}
    for label, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        stats[label] = percentile(ordered, q) * 1000
    stats["max"] = ordered[-1] * 1000
    summary = {k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()}
    # Every 2nd percentile, for the latency CDFs of docs/benchmarks.md.
    summary["cdf"] = [round(percentile(ordered, q / 100) * 1000, 3) for q in range(0, 101, 2)]
    return summary


def machine_busy_percent(seconds: float = 2.0) -> float:
    """CPU the whole machine uses over the next ``seconds``, in % of one core."""
    before, started = busy_cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    return 100 * (busy_cpu_seconds() - before) / (time.monotonic() - started)


def wait_for_quiet(*, timeout: float = 120, label: str = "") -> dict[str, Any]:
    """Wait (up to ``timeout`` s) until the machine is quiet: under ``QUIET_BUSY_PERCENT`` of
    one core busy over 2 s.

    Another benchmark may share this small machine: each measured phase starts only once it is
    quiet, or says that it was not. The CPU in use now, not the 1-minute load average, which
    lags a minute behind: right after a phase the machine is idle but its load still high, and
    a benchmark that has just started barely shows in it. Returns the wait, the busy share and
    the load averages, for the JSON.
    """
    started = time.monotonic()
    busy = machine_busy_percent()
    while busy >= QUIET_BUSY_PERCENT and time.monotonic() - started < timeout:
        busy = machine_busy_percent()
    quiet = busy < QUIET_BUSY_PERCENT
    waited = round(time.monotonic() - started, 1)
    name = f" before {label}" if label else ""
    if not quiet:
        print(
            f"  WARNING: machine still {busy:.0f}% busy (of one core) after {waited:.0f} s"
            f" of waiting{name}; measuring anyway",
            flush=True,
        )
    elif waited >= 4:
        print(f"  (waited {waited:.0f} s for the machine to be quiet{name})")
    return {
        "quiet": quiet,
        "busy_percent": round(busy, 1),
        "waited_s": waited,
        "load_at_start": load_average(),
    }


def load_average() -> list[float]:
    """os.getloadavg(), rounded, for printing beside a result."""
    return [round(x, 2) for x in os.getloadavg()]


def raise_fd_limit() -> int:
    """Raise this process's soft open-files limit to its hard limit (children inherit it)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kib(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def migrate(database_url: str, env: Mapping[str, str]) -> None:
    """``alembic upgrade head`` on ``database_url``."""
    argv = [sys.executable, "-m", "alembic", "upgrade", "head"]
    subprocess.run(argv, cwd=REPO_ROOT, env={**env, "DATABASE_URL": database_url}, check=True)


def postgres_server_cpu_seconds() -> float:
    """CPU time the whole local Postgres server has used so far, every database included: its
    live processes, plus the children its postmaster has reaped (parallel query workers,
    autovacuum workers, closed backends), which ``backends_cpu_seconds`` cannot see."""
    total = 0.0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        name, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1].split()
        if name != "postgres":
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND
        try:
            parent = (Path("/proc") / fields[1] / "comm").read_text().strip()
        except OSError:
            parent = ""
        if parent != "postgres":  # the postmaster: add what its exited children used
            total += (int(fields[13]) + int(fields[14])) / TICKS_PER_SECOND
    return total


def cpu_snapshot_with_server(children: Mapping[str, Child], dbname: str) -> dict[str, float]:
    """cpu_snapshot, plus the whole Postgres server's CPU as "postgres_all" (every database,
    parallel query workers and autovacuum included)."""
    return cpu_snapshot(children, dbname) | {"postgres_all": postgres_server_cpu_seconds()}


def with_other_processes(cpu: dict[str, float]) -> dict[str, float]:
    """``cpu`` (from cpu_percent over cpu_snapshot_with_server snapshots) plus "others": the
    machine's CPU not used by the benchmark's own processes nor by Postgres (someone else's
    work, e.g. another benchmark sharing the machine)."""
    ours = sum(v for k, v in cpu.items() if k not in {"machine", "postgres"})
    return cpu | {"others": round(cpu["machine"] - ours, 1)}
