"""The Redis manager publishes a dispatcher batch's emits in one pipelined round trip
(``HoldingRedisManager.publishing``), each still a message of its own."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.realtime.holding import HoldingRedisManager


class FakePipeline:
    def __init__(self) -> None:
        self.published: list[tuple[str, Any]] = []
        self.executed = 0

    def publish(self, channel: str, data: str) -> FakePipeline:
        self.published.append((channel, json.loads(data)))
        return self

    async def execute(self) -> None:
        self.executed += 1


class FakeRedis:
    """The part of a redis.asyncio client the manager publishes through."""

    def __init__(self) -> None:
        self.pipelines: list[FakePipeline] = []

    def pipeline(self, *, transaction: bool) -> FakePipeline:
        assert not transaction  # PUBLISH needs no MULTI
        self.pipelines.append(FakePipeline())
        return self.pipelines[-1]


@pytest.fixture
def manager() -> tuple[HoldingRedisManager, FakeRedis]:
    manager = HoldingRedisManager("redis://127.0.0.1:1/0", channel="bench", write_only=True)
    redis = FakeRedis()
    manager.redis, manager.connected = redis, True
    return manager, redis


async def test_a_batch_of_emits_is_one_round_trip_of_one_message_each(
    manager: tuple[HoldingRedisManager, FakeRedis],
) -> None:
    sio, redis = manager
    async with sio.publishing():
        for n in range(3):
            await sio.emit("task.created", {"n": n}, room=f"user:{n}")
        assert redis.pipelines == []  # nothing goes out before the block ends
    [pipeline] = redis.pipelines
    assert pipeline.executed == 1
    assert [(channel, m["event"], m["room"]) for channel, m in pipeline.published] == [
        ("bench", "task.created", f"user:{n}") for n in range(3)
    ]


async def test_an_emit_outside_a_batch_goes_out_at_once(
    manager: tuple[HoldingRedisManager, FakeRedis],
) -> None:
    sio, redis = manager
    await sio.emit("presence.changed", {}, room="family:1")
    [pipeline] = redis.pipelines
    assert [m["event"] for _, m in pipeline.published] == ["presence.changed"]


async def test_a_batch_that_fails_publishes_nothing(
    manager: tuple[HoldingRedisManager, FakeRedis],
) -> None:
    sio, redis = manager

    async def emit_then_fail() -> None:
        async with sio.publishing():
            await sio.emit("task.created", {}, room="user:1")
            raise RuntimeError("the batch failed")

    with pytest.raises(RuntimeError):
        await emit_then_fail()
    assert redis.pipelines == []
