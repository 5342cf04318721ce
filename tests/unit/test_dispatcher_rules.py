"""The dispatcher's pure rules: which claimed events wait for an earlier one, retry delays, and
how large the next claim is."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from app.outbox.envelope import OutboxEventRow
from dispatcher import claims
from dispatcher.claims import retry_delay
from dispatcher.settings import DispatcherSettings
from dispatcher.worker import adapt_claim_size, held_back


def event(event_id: int, *recipients: tuple[str, int]) -> OutboxEventRow:
    return OutboxEventRow(
        id=event_id,
        type="task.created",
        version=1,
        payload_text="{}",
        family_id=uuid.uuid4(),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        attempts=1,
        recipients=list(recipients),
    )


def test_nothing_waits_when_no_earlier_event_is_pending() -> None:
    events = [event(1, ("user:a", 1)), event(2, ("user:a", 2), ("user:b", 1))]
    assert held_back(events, {}) == {}


def test_an_event_behind_an_earlier_pending_one_of_its_stream_waits_for_as_long_as_its_claim() -> (
    None
):
    events = [event(5, ("user:a", 7)), event(6, ("user:b", 3))]
    # user:a's seq 6 is still pending elsewhere, claimed 1.5 s ago.
    assert held_back(events, {"user:a": (6, 1.5)}) == {5: 1.5}


def test_a_stream_another_dispatcher_is_delivering_holds_all_its_events() -> None:
    events = [event(1, ("user:a", 1)), event(2, ("user:a", 2)), event(3, ("chat:c", 9))]
    assert held_back(events, {"user:a": (0, 0.0)}) == {1: 0.0, 2: 0.0}


def test_a_held_event_holds_back_the_later_events_of_each_of_its_streams() -> None:
    events = [
        event(10, ("user:a", 5), ("user:b", 3)),  # behind user:a's seq 4
        event(11, ("user:b", 4)),  # behind event 10 on user:b, which nothing else holds
        event(12, ("user:c", 1)),  # unrelated
        event(13, ("user:b", 5), ("user:c", 2)),  # behind 11 on user:b
    ]
    assert held_back(events, {"user:a": (4, 2.0)}) == {10: 2.0, 11: 0.0, 13: 0.0}


def test_events_are_taken_in_id_order_whatever_order_they_come_in() -> None:
    ordered = [event(1, ("user:a", 2)), event(2, ("user:a", 3)), event(3, ("user:z", 1))]
    first_waiting = {"user:a": (1, 0.5)}
    assert held_back(list(reversed(ordered)), first_waiting) == held_back(ordered, first_waiting)
    assert held_back(ordered, first_waiting) == {1: 0.5, 2: 0.5}


def test_a_held_event_waits_as_long_as_the_longest_claim_on_its_streams() -> None:
    events = [event(1, ("user:a", 9), ("user:b", 9), ("user:c", 1))]
    first_waiting = {"user:a": (3, 0.2), "user:b": (8, 4.0), "user:c": (1, 9.0)}
    # user:c's earliest pending seq is this event's own: it does not hold it, but a held
    # event waits for the longest claim among its streams.
    assert held_back(events, first_waiting) == {1: 9.0}


@pytest.mark.parametrize(
    ("attempt", "interval"),
    [(1, (0.5, 1.0)), (2, (1.0, 2.0)), (3, (2.0, 4.0)), (6, (16.0, 32.0)), (7, (30.0, 60.0))],
)
def test_retry_delay_doubles_per_attempt_up_to_the_ceiling_with_full_jitter_in_its_upper_half(
    attempt: int, interval: tuple[float, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(claims.random, "uniform", lambda low, high: (low, high))
    assert retry_delay(attempt, base_seconds=1.0, max_seconds=60.0) == interval


def test_retry_delays_are_jittered_within_their_bounds() -> None:
    delays = [retry_delay(3, base_seconds=1.0, max_seconds=300.0) for _ in range(200)]
    assert all(2.0 <= delay <= 4.0 for delay in delays)
    # Rows that failed together do not retry in lockstep.
    assert len(set(delays)) > 100


def test_claims_grow_while_they_come_back_full_and_shrink_when_not() -> None:
    settings = DispatcherSettings(batch_size=200, max_batch_size=1000)
    sizes = [200]
    for _ in range(4):
        sizes.append(adapt_claim_size(sizes[-1], sizes[-1], settings))
    assert sizes == [200, 400, 800, 1000, 1000]
    assert adapt_claim_size(1000, 999, settings) == 500
    assert adapt_claim_size(500, 0, settings) == 250
    assert adapt_claim_size(250, 3, settings) == 200
    assert adapt_claim_size(200, 3, settings) == 200


def test_a_batch_size_above_the_maximum_is_kept_as_it_is() -> None:
    settings = DispatcherSettings(batch_size=2000, max_batch_size=1000)
    assert adapt_claim_size(2000, 2000, settings) == 2000
    assert adapt_claim_size(2000, 10, settings) == 2000
