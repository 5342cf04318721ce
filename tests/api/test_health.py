"""Health endpoints: readiness follows the database, and says nothing about where it is."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.harness import free_port, web_process


async def test_ready_with_a_database(api: httpx.AsyncClient) -> None:
    answer = await api.get("/readyz")
    assert (answer.status_code, answer.json()) == (200, {"status": "ready"})


async def test_not_ready_without_one_and_no_connection_details_leak(log_dir: Path) -> None:
    port = free_port()  # nothing listens here
    unreachable = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    web, base_url = await asyncio.to_thread(web_process, unreachable, log_dir)
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            answer = await client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json() == {
            "error": {"code": "not_ready", "message": "database unreachable", "details": {}}
        }
        # The reason is for operators: in the log, not in an unauthenticated answer.
        assert str(port) in web.log()
    finally:
        web.stop()
