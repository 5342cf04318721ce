"""The per-socket token bucket (app/realtime/rate_limit.py), on a clock the test moves."""

from __future__ import annotations

from app.realtime.rate_limit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def takes(bucket: TokenBucket, count: int) -> list[bool]:
    return [bucket.take() for _ in range(count)]


def test_a_full_bucket_allows_the_burst_then_refuses() -> None:
    bucket = TokenBucket(rate=2, burst=5, clock=Clock())
    assert takes(bucket, 7) == [True] * 5 + [False] * 2


def test_tokens_come_back_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2, burst=5, clock=clock)
    takes(bucket, 5)
    clock.now += 0.25  # half a token
    assert bucket.take() is False
    clock.now += 0.25  # a whole one now
    assert takes(bucket, 2) == [True, False]
    clock.now += 1.5  # three
    assert takes(bucket, 4) == [True, True, True, False]


def test_an_idle_bucket_never_holds_more_than_the_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=3, clock=clock)
    clock.now += 3600
    assert takes(bucket, 4) == [True, True, True, False]


def test_refused_events_cost_nothing() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=1, burst=1, clock=clock)
    assert bucket.take() is True
    # A flood while empty does not push the next token further away.
    assert takes(bucket, 100) == [False] * 100
    clock.now += 1.0
    assert bucket.take() is True


def test_a_fractional_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=0.5, burst=1, clock=clock)
    assert takes(bucket, 2) == [True, False]
    clock.now += 1.9
    assert bucket.take() is False
    clock.now += 0.1
    assert bucket.take() is True
