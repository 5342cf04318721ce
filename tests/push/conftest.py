"""Fixtures of the Web Push tests: a VAPID key pair, the loopback push service, web, dispatcher."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from app.vapid_keys import generate_key_pair
from doubles.push_service import PushService
from tests.harness import ManagedProcess, web_process
from tests.push.support import ALLOWLIST, VAPID_SUBJECT, dispatcher_env, start_dispatcher


@pytest.fixture
def vapid_keys() -> tuple[str, str]:
    return generate_key_pair()


@pytest.fixture
async def push_service(tmp_path: Path, vapid_keys: tuple[str, str]) -> AsyncIterator[PushService]:
    service = PushService(vapid_keys[1], tmp_path)
    await service.start()
    yield service
    await service.close()


@pytest.fixture
def push_endpoint_allowlist() -> str:
    """The web process's APP_PUSH_ENDPOINT_ALLOWLIST (a test module may override it)."""
    return ALLOWLIST


@pytest.fixture
def web(
    database_url: str, log_dir: Path, vapid_keys: tuple[str, str], push_endpoint_allowlist: str
) -> Iterator[str]:
    """The web process knows only the public key, and allows the loopback push service."""
    proc, base_url = web_process(
        database_url,
        log_dir,
        APP_VAPID_PUBLIC_KEY=vapid_keys[1],
        APP_VAPID_SUBJECT=VAPID_SUBJECT,
        APP_PUSH_ENDPOINT_ALLOWLIST=push_endpoint_allowlist,
    )
    yield base_url
    proc.stop()


@pytest.fixture
def dispatcher(
    database_url: str, log_dir: Path, push_service: PushService, vapid_keys: tuple[str, str]
) -> Iterator[ManagedProcess]:
    proc = start_dispatcher(database_url, log_dir, dispatcher_env(push_service, vapid_keys))
    yield proc
    proc.stop()
