"""Fixtures: a migrated template database cloned per test, and the system's real processes."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from alembic import command
from alembic.config import Config
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import create_engine, create_sessionmaker
from app.outbox.staging import notify_channel_info
from bench.harness import scratch_database
from tests.harness import (
    REPO_ROOT,
    TEST_JWT_SECRET,
    ManagedProcess,
    dispatcher_process,
    web_process,
)

if TYPE_CHECKING:  # Playwright is imported by the browser fixtures only, when they run.
    from playwright.async_api import Browser, Page

UNIT_DIR = Path(__file__).resolve().parent / "unit"
# What a unit test may not use: each needs a database server or starts a process.
SERVER_FIXTURES = {"server_url", "template_database", "database_url", "web", "dispatcher", "api"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/unit/ is marked ``unit`` (``-m unit``) and must need no server."""
    for item in items:
        if item.path.is_relative_to(UNIT_DIR):
            item.add_marker(pytest.mark.unit)
        if item.get_closest_marker("unit") is not None:
            needs = SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
            if needs:
                raise pytest.UsageError(
                    f"{item.nodeid} is a unit test but uses {sorted(needs)}: move it out of"
                    " tests/unit/ (unit tests need no server)"
                )


@pytest.fixture(scope="session")
def server_url() -> str:
    """The Postgres server the tests use: DATABASE_URL, or an embedded one when it is unset."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    from app.embedded_postgres import ensure_embedded_postgres

    return ensure_embedded_postgres(REPO_ROOT / ".data" / "test-postgres")


@pytest.fixture(scope="session")
def template_database(server_url: str) -> Iterator[str]:
    """A database migrated once per test session, for tests to clone."""
    with scratch_database(server_url, "family_template") as url:
        config = Config(str(REPO_ROOT / "alembic.ini"))
        config.attributes["database_url"] = url
        config.attributes["configure_logger"] = False
        command.upgrade(config, "head")
        yield conninfo_to_dict(url)["dbname"]


@pytest.fixture
def database_url(server_url: str, template_database: str) -> Iterator[str]:
    """A fresh database of this test's own, cloned from the migrated template."""
    with scratch_database(server_url, "family_test", template=template_database) as url:
        yield url


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def web(database_url: str, log_dir: Path) -> Iterator[str]:
    """A running web process (uvicorn); yields its base URL."""
    proc, base_url = web_process(database_url, log_dir)
    yield base_url
    proc.stop()


@pytest.fixture
def dispatcher(database_url: str, log_dir: Path) -> Iterator[ManagedProcess]:
    """A running dispatcher process."""
    proc = dispatcher_process(database_url, log_dir)
    yield proc
    proc.stop()


@pytest.fixture
def start_dispatcher(database_url: str, log_dir: Path) -> Iterator[Callable[..., ManagedProcess]]:
    """Starts dispatcher processes (with extra environment) that are stopped after the test."""
    started: list[ManagedProcess] = []

    def start(**env: str) -> ManagedProcess:
        proc = dispatcher_process(database_url, log_dir, **env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
async def api(web: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=web, timeout=10) as client:
        yield client


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The app's own sessions on the test's database, for tests that write through services:
    their outbox events NOTIFY the dispatchers as the web process's do."""
    engine = create_engine(database_url)
    yield create_sessionmaker(engine, info=notify_channel_info("outbox_events"))
    await engine.dispose()


@pytest.fixture
def jwt_secret() -> str:
    return TEST_JWT_SECRET


@pytest.fixture
def chromium() -> Path:
    """Debian's Chromium; missing is a failure, not a skip, since CI installs it."""
    from tests.browser.support import CHROMIUM

    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: install Debian's chromium package "
            "(apt-get install chromium; .ci/run does this). Never `playwright install`."
        )
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    """A headless Chromium driven by Playwright."""
    from playwright.async_api import async_playwright

    from tests.browser.support import CHROMIUM_ARGS

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh browser context's page; an uncaught script error fails the test."""
    context = await browser.new_context()
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    await context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"
