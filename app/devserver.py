"""Run the whole system for development in one terminal: ``python -m app.devserver``.

Uses the embedded Postgres under ``.data/postgres`` unless ``DATABASE_URL`` is set, migrates,
loads the demo family, then runs the Procfile's ``web`` and ``dispatcher`` with prefixed output.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
EMBEDDED_DATA_DIR = REPO / ".data" / "postgres"
STOP_TIMEOUT_SECONDS = 10.0
PROCFILE = REPO / "Procfile"


def procfile_web_options() -> list[str]:
    """The server options of the Procfile's ``web`` entry, less its address and ``--factory``
    (that one belongs to the app named beside it): what a deployment runs (the README's
    Procfile table says why each is there). The tests and benchmarks start their web processes
    with them too."""
    line = next(line for line in PROCFILE.read_text().splitlines() if line.startswith("web:"))
    words = shlex.split(line.removeprefix("web:"))
    options, skip = [], False
    for word in words[words.index("app.main:create_app") + 1 :]:
        if skip:
            skip = False
        elif word in {"--host", "--port"}:
            skip = True
        elif word != "--factory":
            options.append(word)
    return options


@dataclass
class Child:
    """One child process and the task that copies its output to ours."""

    name: str
    args: list[str]
    process: asyncio.subprocess.Process | None = None
    pump: asyncio.Task[None] | None = field(default=None, repr=False)


def main() -> int:
    """Prepare the environment, then supervise the children until Ctrl-C or one of them dies."""
    # Until the event loop owns the signals, make SIGTERM unwind like Ctrl-C so that atexit
    # hooks (which stop the embedded Postgres) still run.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        env = _child_environment()
        return asyncio.run(_run(env))
    except KeyboardInterrupt:
        return 130


def _child_environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("APP_ENVIRONMENT", "development")
    env["PYTHONUNBUFFERED"] = "1"  # children write to pipes; we want their lines as they come
    if "DATABASE_URL" in env:
        print(f"database: DATABASE_URL ({_without_password(env['DATABASE_URL'])})", flush=True)
        return env
    print(f"database: starting embedded Postgres in {EMBEDDED_DATA_DIR} ...", flush=True)
    # Imported here: pgserver is an optional extra, unneeded when DATABASE_URL is given.
    from app.embedded_postgres import ensure_embedded_postgres

    env["DATABASE_URL"] = ensure_embedded_postgres(EMBEDDED_DATA_DIR)
    print(f"database: embedded Postgres at {env['DATABASE_URL']}", flush=True)
    return env


async def _run(env: dict[str, str]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    py = sys.executable
    port = env.get("PORT", "8000")
    web = ["app.main:create_app", "--factory", *procfile_web_options()]
    web_address = ["--host", "127.0.0.1", "--port", port]
    steps = [
        Child("release", [py, "-m", "alembic", "upgrade", "head"]),
        Child("demo", [py, "-m", "app.demo"]),
    ]
    services = [
        Child(
            "web",
            [py, "-m", "uvicorn", *web, *web_address],
        ),
        Child("dispatcher", [py, "-m", "dispatcher"]),
    ]
    try:
        for step in steps:
            code = await _supervise([step], env, stop, one_shot=True)
            if code != 0:
                return code
        print(f"open http://127.0.0.1:{port}/  (Ctrl-C stops everything)", flush=True)
        return await _supervise(services, env, stop, one_shot=False)
    finally:
        await asyncio.gather(*(_stop(child) for child in steps + services))


async def _supervise(
    children: list[Child], env: dict[str, str], stop: asyncio.Event, *, one_shot: bool
) -> int:
    """Run the children until the first exits or we are told to stop, then stop the rest.

    A one-shot command is expected to exit, with 0; a service exiting is always a failure.
    """
    for child in children:
        await _start(child, env)
    exits = {asyncio.ensure_future(_wait(child)): child for child in children}
    stopping = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait([*exits, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if stopping in done:
        print("stopping ...", flush=True)
        # An interrupted one-shot must keep us from going on; stopped services are a clean exit.
        code = 130 if one_shot else 0
    else:
        exited = exits[done.pop()]
        assert exited.process is not None
        returncode = exited.process.returncode
        if one_shot and returncode == 0:
            code = 0
        else:
            what = "failed" if one_shot else "exited unexpectedly"
            print(f"{exited.name} {what} with exit code {returncode}; stopping", flush=True)
            code = returncode if returncode is not None and returncode > 0 else 1
    await asyncio.gather(*(_stop(child) for child in children))
    await asyncio.gather(*exits)
    return code


async def _start(child: Child, env: dict[str, str]) -> None:
    # Each child gets its own process group: Ctrl-C in the terminal reaches only us, and we stop
    # each child together with anything it spawned.
    child.process = await asyncio.create_subprocess_exec(
        *child.args,
        cwd=REPO,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        process_group=0,
    )
    assert child.process.stdout is not None
    child.pump = asyncio.ensure_future(_copy_lines(child.name, child.process.stdout))


async def _copy_lines(name: str, stream: asyncio.StreamReader) -> None:
    prefix = f"{name:<10} | "
    while line := await stream.readline():
        sys.stdout.write(prefix + line.decode(errors="replace").rstrip("\r\n") + "\n")
        sys.stdout.flush()


async def _wait(child: Child) -> int:
    """Wait for the child to exit and for the last of its output to be printed."""
    assert child.process is not None
    assert child.pump is not None
    code = await child.process.wait()
    await child.pump
    return code


async def _stop(child: Child) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it outlives the timeout."""
    process = child.process
    if process is None or process.returncode is not None:
        return
    _signal_group(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
    except TimeoutError:
        print(f"{child.name} did not stop in {STOP_TIMEOUT_SECONDS:g}s; killing it", flush=True)
        _signal_group(process.pid, signal.SIGKILL)
        await process.wait()


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(pgid, signum)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


if __name__ == "__main__":
    sys.exit(main())
