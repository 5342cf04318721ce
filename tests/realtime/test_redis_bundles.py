"""A dispatcher batch crosses Redis as one message (a bundle), and each web process hands its
emits to the Socket.IO tier one by one, in order: one PUBLISH and one message to parse per
batch rather than per event (the Postgres manager bundles its NOTIFYs the same way)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from app.realtime.holding import HoldingRedisManager

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def managers() -> AsyncIterator[list[HoldingRedisManager]]:
    """The managers a test makes, their Redis connections closed after it."""
    made: list[HoldingRedisManager] = []
    yield made
    for manager in made:
        if manager.connected:
            await manager.pubsub.aclose()
            await manager.redis.aclose()


@pytest.fixture
async def channel() -> AsyncIterator[tuple[str, redis.client.PubSub]]:
    """A channel of this test's own on the machine's Redis, and a raw subscriber to it."""
    name = f"bundle-test-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL)
    pubsub = client.pubsub()
    await pubsub.subscribe(name)
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    yield name, pubsub
    await pubsub.aclose()
    await client.aclose()


async def raw_messages(pubsub: redis.client.PubSub, wait: float) -> list[bytes]:
    """Every message the channel carries within ``wait`` s."""
    messages = []
    deadline = asyncio.get_running_loop().time() + wait
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
        if message is not None:
            messages.append(message["data"])
    return messages


async def test_a_batch_is_one_message_that_a_web_process_unbundles_in_order(
    channel: tuple[str, redis.client.PubSub], managers: list[HoldingRedisManager]
) -> None:
    name, pubsub = channel
    dispatcher = HoldingRedisManager(REDIS_URL, channel=name, write_only=True)
    web = HoldingRedisManager(REDIS_URL, channel=name, write_only=False)
    managers += [dispatcher, web]
    # A socket of the web process's in each of these rooms (none in user:9's).
    web.rooms = {"/": {f"user:{n}": {f"sid{n}": f"eio{n}"} for n in range(3)}}
    received = web._listen()
    first = asyncio.ensure_future(anext(received))
    await asyncio.sleep(0.3)  # let the web side subscribe before anything is published

    async with dispatcher.publishing():
        for n in (0, 9, 1, 2):
            await dispatcher.emit("task.created", {"n": n}, room=f"user:{n}")

    [raw] = await raw_messages(pubsub, wait=0.5)
    assert [m["room"] for m in json.loads(raw)] == ["user:0", "user:9", "user:1", "user:2"]
    # The web process hands on only what may reach a socket of its own.
    unbundled = [await asyncio.wait_for(first, 2)]
    unbundled += [await asyncio.wait_for(anext(received), 2) for _ in range(2)]
    assert [(m["method"], m["event"], m["data"], m["room"]) for m in unbundled] == [
        ("emit", "task.created", [{"n": n}], f"user:{n}") for n in range(3)
    ]
    await received.aclose()


async def test_a_lone_emit_goes_out_at_once_as_a_plain_message(
    channel: tuple[str, redis.client.PubSub], managers: list[HoldingRedisManager]
) -> None:
    name, pubsub = channel
    web = HoldingRedisManager(REDIS_URL, channel=name, write_only=True)
    managers.append(web)
    await web.emit("presence.changed", {"online": True}, room="family:1")
    [raw] = await raw_messages(pubsub, wait=0.5)
    assert json.loads(raw)["event"] == "presence.changed"


async def test_a_batch_that_fails_publishes_nothing(
    channel: tuple[str, redis.client.PubSub], managers: list[HoldingRedisManager]
) -> None:
    name, pubsub = channel
    dispatcher = HoldingRedisManager(REDIS_URL, channel=name, write_only=True)
    managers.append(dispatcher)

    async def emit_then_fail() -> None:
        async with dispatcher.publishing():
            await dispatcher.emit("task.created", {}, room="user:1")
            raise RuntimeError("the batch failed")

    with pytest.raises(RuntimeError):
        await emit_then_fail()
    assert await raw_messages(pubsub, wait=0.5) == []
