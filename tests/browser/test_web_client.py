"""The static web client in a real Chromium: log-in, live task events, completing a task."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from playwright.async_api import Page, expect

from tests.browser.support import DEADLINE_MS, PASSWORD, log_in
from tests.harness import (
    ManagedProcess,
    add_member,
    signup,
    terminate_listeners,
    web_process,
)


async def test_child_sees_a_new_task_live_and_completes_it(
    api: httpx.AsyncClient, web: str, dispatcher: ManagedProcess, page: Page
) -> None:
    parent = await signup(api, "Ada")
    child = await add_member(api, parent, "Kim", "child")

    await log_in(page, web, child)
    await expect(page.get_by_test_id("current-user")).to_have_text("Kim (child)")
    await expect(page.get_by_test_id("task-list-empty")).to_be_visible()
    # Only a connected socket hears the event; before that the page would merely refetch.
    await expect(page.get_by_test_id("connection-status")).to_have_text(
        "connected", timeout=DEADLINE_MS
    )
    await page.evaluate("window.loadedOnce = true")  # gone if the page reloads

    created = await api.post(
        f"/v1/families/{parent.family_id}/tasks",
        headers=parent.headers,
        json={"title": "Dishes", "karmaReward": 5, "assignedTo": [child.id]},
    )
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]

    toast = page.get_by_test_id("toast").filter(has_text="New task assigned: Dishes")
    await expect(toast).to_be_visible(timeout=DEADLINE_MS)
    await expect(toast).to_have_attribute("data-event-type", "task.created")
    task = page.locator(f'[data-testid="task"][data-task-id="{task_id}"]')
    await expect(task).to_have_attribute("data-status", "open", timeout=DEADLINE_MS)
    await expect(task.get_by_test_id("task-title")).to_have_text("Dishes")
    assert await page.evaluate("window.loadedOnce") is True

    await task.get_by_test_id("task-complete").click()

    await expect(task).to_have_attribute("data-status", "completed", timeout=DEADLINE_MS)
    await expect(task.get_by_test_id("task-status")).to_have_text("Done by you")
    await expect(task.get_by_test_id("task-complete")).to_have_count(0)
    assert await page.evaluate("window.loadedOnce") is True
    stored = await api.get(f"/v1/families/{parent.family_id}/tasks", headers=parent.headers)
    [done] = stored.json()
    assert done["completedBy"] == child.id


async def test_wrong_password_shows_an_error(api: httpx.AsyncClient, web: str, page: Page) -> None:
    parent = await signup(api, "Ada")

    await log_in(page, web, parent, password="not the password")

    error = page.get_by_test_id("login-error")
    await expect(error).to_be_visible(timeout=DEADLINE_MS)
    await expect(error).to_have_text("wrong e-mail or password")
    await expect(page.get_by_test_id("app-view")).to_be_hidden()
    await expect(page.get_by_test_id("connection-status")).to_have_text("offline")
    assert await page.evaluate("localStorage.length") == 0
    # The form stays usable: the right password logs in from the same page.
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    await expect(page.get_by_test_id("current-user")).to_have_text("Ada (parent)")
    await expect(error).to_be_hidden()


async def test_the_page_catches_up_after_the_web_process_lost_its_channel(
    api: httpx.AsyncClient, web: str, database_url: str, dispatcher: ManagedProcess, page: Page
) -> None:
    parent = await signup(api, "Ada")
    child = await add_member(api, parent, "Kim", "child")
    await log_in(page, web, child)
    await expect(page.get_by_test_id("connection-status")).to_have_text(
        "connected", timeout=DEADLINE_MS
    )

    # The web process stops hearing the dispatcher's emits for a moment; the task created
    # meanwhile is delivered into the void, and only the catch-up after `resync` brings it.
    assert terminate_listeners(database_url, "socketio") == 1
    created = await api.post(
        f"/v1/families/{parent.family_id}/tasks",
        headers=parent.headers,
        json={"title": "Laundry", "assignedTo": [child.id]},
    )
    assert created.status_code == 201, created.text

    toast = page.get_by_test_id("toast").filter(has_text="New task assigned: Laundry")
    await expect(toast).to_be_visible(timeout=DEADLINE_MS)
    task = page.locator(f'[data-testid="task"][data-task-id="{created.json()["id"]}"]')
    await expect(task).to_have_attribute("data-status", "open", timeout=DEADLINE_MS)
    metrics = (await api.get("/metrics")).text
    assert 'realtime_resyncs_total{reason="channel_lost"} 1.0' in metrics
    assert 'realtime_catch_ups_total{recovered="true"} 1.0' in metrics


async def test_the_page_stays_logged_in_past_its_tokens_and_log_out_ends_the_session(
    database_url: str,
    log_dir: Path,
    start_dispatcher: Callable[..., ManagedProcess],
    page: Page,
) -> None:
    # 3-second access tokens: the page renews each a second after it gets it.
    proc, web = web_process(database_url, log_dir, APP_JWT_TTL_SECONDS="3")
    start_dispatcher()
    try:
        async with httpx.AsyncClient(base_url=web, timeout=10) as api:
            parent = await signup(api, "Ada")
            child = await add_member(api, parent, "Kim", "child")
            await log_in(page, web, child)
            status = page.get_by_test_id("connection-status")
            await expect(status).to_have_text("connected", timeout=DEADLINE_MS)
            first = await page.evaluate("JSON.parse(localStorage.getItem('family.session'))")

            await page.wait_for_timeout(8_000)  # over two token lifetimes

            await expect(status).to_have_text("connected")
            renewed = await page.evaluate("JSON.parse(localStorage.getItem('family.session'))")
            assert renewed["sessionId"] == first["sessionId"]
            assert renewed["refreshToken"] != first["refreshToken"]
            fresh = await api.post(
                "/v1/auth/login", json={"email": parent.email, "password": PASSWORD}
            )
            created = await api.post(
                f"/v1/families/{parent.family_id}/tasks",
                headers={"Authorization": f"Bearer {fresh.json()['accessToken']}"},
                json={"title": "Dishes", "assignedTo": [child.id]},
            )
            assert created.status_code == 201, created.text
            toast = page.get_by_test_id("toast").filter(has_text="New task assigned: Dishes")
            await expect(toast).to_be_visible(timeout=DEADLINE_MS)
            await expect(page.get_by_test_id("auth-view")).to_be_hidden()

            last = await page.evaluate("JSON.parse(localStorage.getItem('family.session'))")
            await page.click("#logout")
            await expect(page.get_by_test_id("auth-view")).to_be_visible()
            assert await page.evaluate("localStorage.getItem('family.session')") is None
            # The session ended on the server: its refresh token is refused.
            refused = await api.post(
                "/v1/auth/refresh", json={"refreshToken": last["refreshToken"]}
            )
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "session_revoked"
    finally:
        proc.stop()
