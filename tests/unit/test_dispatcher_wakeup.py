"""The dispatchers' wake-up coalesces commits' requests into NOTIFYs, and never loses the last."""

from __future__ import annotations

import logging
import threading

import pytest

from app.outbox.wakeup import DispatcherWakeup

WAIT = 5.0  # seconds; only ever reached when a test fails


class FakeNotifier:
    """Counts sends; while ``hold`` is clear a send blocks (a NOTIFY in flight)."""

    def __init__(self) -> None:
        self.sends = 0
        self.closed = False
        self.hold = threading.Event()
        self.hold.set()
        self.sending = threading.Event()
        self.sent = threading.Semaphore(0)
        self.fail_next = False

    def send(self) -> None:
        self.sending.set()
        assert self.hold.wait(WAIT)
        self.sends += 1
        self.sent.release()
        if self.fail_next:
            self.fail_next = False
            raise OSError("connection refused")

    def close(self) -> None:
        self.closed = True

    def wait_sent(self) -> None:
        assert self.sent.acquire(timeout=WAIT)


def test_a_request_sends_one_notify() -> None:
    notifier = FakeNotifier()
    wakeup = DispatcherWakeup(notifier)
    wakeup.request()
    notifier.wait_sent()
    wakeup.close()
    assert notifier.sends == 1
    assert notifier.closed


def test_requests_during_a_send_make_exactly_one_more() -> None:
    notifier = FakeNotifier()
    notifier.hold.clear()
    wakeup = DispatcherWakeup(notifier)
    wakeup.request()
    assert notifier.sending.wait(WAIT)  # the first NOTIFY is in flight ...
    for _ in range(200):
        wakeup.request()  # ... while 200 more commits happen
    notifier.hold.set()
    notifier.wait_sent()
    notifier.wait_sent()  # the one that covers the 200: never lost
    wakeup.close()
    assert notifier.sends == 2


def test_no_request_no_notify_and_no_thread() -> None:
    notifier = FakeNotifier()
    wakeup = DispatcherWakeup(notifier)
    wakeup.close()
    assert notifier.sends == 0


def test_close_sends_the_wakeup_still_wanted_and_later_requests_none() -> None:
    notifier = FakeNotifier()
    notifier.hold.clear()
    wakeup = DispatcherWakeup(notifier)
    wakeup.request()
    assert notifier.sending.wait(WAIT)
    wakeup.request()  # wanted while the first is in flight
    closing = threading.Thread(target=wakeup.close)
    closing.start()
    notifier.hold.set()
    closing.join(WAIT)
    assert not closing.is_alive()
    assert notifier.sends == 2
    wakeup.request()  # after close: the dispatchers' poll covers it
    assert notifier.sends == 2


def test_a_failed_notify_is_logged_and_the_next_request_still_sends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="app.outbox.wakeup")
    notifier = FakeNotifier()
    notifier.fail_next = True
    wakeup = DispatcherWakeup(notifier)
    wakeup.request()  # the caller never sees the failure
    notifier.wait_sent()
    wakeup.request()
    notifier.wait_sent()
    wakeup.close()
    assert notifier.sends == 2
    assert "could not wake the dispatchers" in caplog.text
