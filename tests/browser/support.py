"""The web client's tests drive Debian's Chromium (never a Playwright-downloaded browser); the
``chromium``, ``browser`` and ``page`` fixtures are in tests/conftest.py."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page

from tests.harness import Member

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery"  # the one tests.harness gives every member
DEADLINE_MS = 15_000


async def log_in(page: Page, web: str, member: Member, password: str = PASSWORD) -> None:
    await page.goto(web)
    await page.fill("#login-email", member.email)
    await page.fill("#login-password", password)
    await page.click("#login-submit")
