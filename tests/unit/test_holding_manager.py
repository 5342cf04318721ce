"""Holds on live emits while a socket catches up (app/realtime/holding.py), under a real
python-socketio manager whose server is a fake that records what each socket was sent."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from engineio.exceptions import SocketIsClosedError
from socketio import packet
from socketio.async_manager import AsyncManager

from app.realtime.holding import HeldEmit, HoldingManager

NS = "/"


class FakeServer:
    """The part of ``socketio.AsyncServer`` a manager sends through: records (sid, event, data)."""

    packet_class = packet.Packet

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, Any]] = []
        self.wire: list[tuple[str, str]] = []  # (sid, the Engine.IO message's text)
        # Sockets Engine.IO has closed: sending to one raises, as it does.
        self.closed: set[str] = set()
        # Called after each send, e.g. to emit again while a release is flushing.
        self.after_send: Callable[[str, str, Any], Awaitable[None]] | None = None

    async def _send_eio_packet(self, eio_sid: str, eio_pkt: Any) -> None:
        event, data = packet.Packet(encoded_packet=eio_pkt.data).data
        sid = eio_sid.removeprefix("eio-")
        if sid in self.closed:
            raise SocketIsClosedError()
        self.sent.append((sid, event, data))
        self.wire.append((sid, eio_pkt.data))
        if self.after_send is not None:
            await self.after_send(sid, event, data)

    def to(self, sid: str) -> list[tuple[str, Any]]:
        return [(event, data) for to, event, data in self.sent if to == sid]


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def manager(server: FakeServer) -> HoldingManager:
    manager = HoldingManager()
    manager.set_server(server)
    return manager


def connect(manager: AsyncManager, sid: str, *rooms: str) -> None:
    eio_sid = f"eio-{sid}"
    for room in (None, sid, *rooms):
        manager.basic_enter_room(sid, NS, room, eio_sid=eio_sid)


def event(n: int) -> dict[str, Any]:
    return {"id": f"evt_{n}", "stream": "user:a", "seq": n}


async def test_without_holds_an_emit_reaches_everyone_in_the_room(
    manager: HoldingManager, server: FakeServer
) -> None:
    connect(manager, "s1", "user:a")
    connect(manager, "s2", "user:a")
    connect(manager, "s3", "user:b")
    await manager.emit("task.created", event(1), NS, room="user:a")
    assert sorted(sid for sid, _, _ in server.sent) == ["s1", "s2"]


async def test_a_socket_closed_before_its_disconnect_does_not_stop_the_emit(
    manager: HoldingManager, server: FakeServer
) -> None:
    for sid in ("s1", "s2", "s3"):
        connect(manager, sid, "family:f")
    server.closed.add("s2")
    await manager.emit("presence.changed", event(1), NS, room="family:f")
    assert sorted(sid for sid, _, _ in server.sent) == ["s1", "s3"]


async def test_a_held_socket_gets_nothing_live_until_released(
    manager: HoldingManager, server: FakeServer
) -> None:
    connect(manager, "held", "user:a")
    connect(manager, "other", "user:a")
    manager.hold("held")
    await manager.emit("task.created", event(1), NS, room="user:a")
    await manager.emit("task.created", event(2), NS, to="user:a")
    assert server.to("held") == []
    assert server.to("other") == [("task.created", event(1)), ("task.created", event(2))]

    await manager.release("held", skip=lambda held: False)
    assert server.to("held") == [("task.created", event(1)), ("task.created", event(2))]
    # The hold is lifted: the next emit goes straight through.
    await manager.emit("task.created", event(3), NS, room="user:a")
    assert server.to("held")[-1] == ("task.created", event(3))


async def test_release_skips_what_the_replay_already_covered(
    manager: HoldingManager, server: FakeServer
) -> None:
    connect(manager, "held", "user:a")
    manager.hold("held")
    for n in (1, 2, 3):
        await manager.emit("task.created", event(n), NS, room="user:a")
    asked: list[HeldEmit] = []

    def replayed(held: HeldEmit) -> bool:
        asked.append(held)
        return held[2]["seq"] <= 2

    await manager.release("held", skip=replayed)
    assert asked == [("user:a", "task.created", event(n)) for n in (1, 2, 3)]
    assert server.to("held") == [("task.created", event(3))]


async def test_emits_during_the_release_are_flushed_in_order_before_the_hold_lifts(
    manager: HoldingManager, server: FakeServer
) -> None:
    connect(manager, "held", "user:a")
    manager.hold("held")
    await manager.emit("task.created", event(1), NS, room="user:a")

    async def emit_while_flushing(sid: str, name: str, data: Any) -> None:
        if data["seq"] == 1:  # the first flushed send: a live event races the release
            await manager.emit("task.created", event(2), NS, room="user:a")

    server.after_send = emit_while_flushing
    await manager.release("held", skip=lambda held: False)
    assert [data["seq"] for _, data in server.to("held")] == [1, 2]


async def test_send_direct_passes_the_hold(manager: HoldingManager, server: FakeServer) -> None:
    connect(manager, "held", "user:a")
    manager.hold("held")
    await manager.send_direct("held", "sync", {"lastSeq": 0})
    assert server.to("held") == [("sync", {"lastSeq": 0})]


async def test_a_forgotten_socket_s_buffer_is_dropped(
    manager: HoldingManager, server: FakeServer
) -> None:
    connect(manager, "gone", "user:a")
    manager.hold("gone")
    await manager.emit("task.created", event(1), NS, room="user:a")
    manager.forget("gone")
    await manager.release("gone", skip=lambda held: False)
    assert server.to("gone") == []


async def test_a_skipped_sid_is_neither_sent_to_nor_buffered(
    manager: HoldingManager, server: FakeServer
) -> None:
    connect(manager, "held", "user:a")
    connect(manager, "sender", "user:a")
    manager.hold("held")
    await manager.emit("chat.typing", {"typing": True}, NS, room="user:a", skip_sid="held")
    await manager.release("held", skip=lambda held: False)
    assert server.to("held") == []
    assert server.to("sender") == [("chat.typing", {"typing": True})]


async def test_watchers_hear_of_each_emit_of_their_event(manager: HoldingManager) -> None:
    connect(manager, "s1", "user:a")
    heard: list[tuple[str | None, Any]] = []

    async def watcher(room: str | None, data: Any) -> None:
        heard.append((room, data))

    manager.watch("task.created", watcher)
    await manager.emit("task.created", event(1), NS, room="user:a")
    await manager.emit("task.deleted", event(2), NS, room="user:a")
    assert heard == [("user:a", event(1))]


async def test_a_lost_channel_tells_each_stream_room_to_resync_once(
    manager: HoldingManager, server: FakeServer
) -> None:
    connect(manager, "s1", "user:a", "family:f", "chat:c")
    connect(manager, "s2", "user:b", "family:f", "chat:c")
    await manager.announce_channel_lost()
    resyncs = sorted((sid, data["stream"]) for sid, name, data in server.sent if name == "resync")
    # Stream rooms only: family rooms carry no numbered events, sid rooms are not streams.
    assert resyncs == [("s1", "chat:c"), ("s1", "user:a"), ("s2", "chat:c"), ("s2", "user:b")]
    assert {data["reason"] for _, _, data in server.sent} == {"channel_lost"}


def test_rooms_are_kept_as_python_socketio_keeps_them() -> None:
    """The manager's index of each socket's rooms (for disconnects and ``rooms(sid)``) leaves
    the rooms as python-socketio's own manager does, whatever the order of comings and goings."""
    ours, theirs = HoldingManager(), AsyncManager()
    for manager in (ours, theirs):
        connect(manager, "s1", "user:a", "family:f")
        connect(manager, "s2", "user:b", "family:f", "chat:c")
        connect(manager, "s3", "user:c", "family:f", "chat:c")
        manager.basic_leave_room("s2", NS, "chat:c")
        manager.basic_leave_room("s2", NS, "not-a-room")
        manager.basic_disconnect("s3", NS)
        manager.basic_disconnect("s9", NS)  # never connected
        connect(manager, "s4", "chat:c")
    for sid in ("s1", "s2", "s3", "s4"):
        assert sorted(ours.get_rooms(sid, NS)) == sorted(theirs.get_rooms(sid, NS))
    assert {room: dict(members) for room, members in ours.rooms[NS].items()} == {
        room: dict(members) for room, members in theirs.rooms[NS].items()
    }
    assert "user:c" not in ours.rooms[NS]  # emptied rooms go
    for manager in (ours, theirs):
        for sid in ("s1", "s2", "s4"):
            manager.basic_disconnect(sid, NS)
    assert ours.rooms == theirs.rooms == {}


async def test_an_event_sent_as_json_text_is_the_packet_python_socketio_encodes(
    manager: HoldingManager, server: FakeServer
) -> None:
    connect(manager, "s1", "user:a")
    envelope = event(1) | {"data": {"title": 'Café ☕ "quoted"', "points": [1, 2.5, None]}}
    await manager.send_direct("s1", "task.created", envelope)
    await manager.send_encoded(
        "s1", [("task.created", json.dumps(envelope, separators=(",", ":")))]
    )
    (_, encoded_by_the_library), (_, encoded_from_text) = server.wire
    assert encoded_from_text == encoded_by_the_library
    assert server.to("s1") == [("task.created", envelope)] * 2


async def test_json_text_to_a_socket_that_is_gone_or_closed_is_dropped(
    manager: HoldingManager, server: FakeServer
) -> None:
    connect(manager, "s1")
    server.closed.add("s1")
    messages = [("task.created", json.dumps(event(n))) for n in (1, 2)]
    await manager.send_encoded("s1", messages)
    await manager.send_encoded("never-connected", messages)
    assert server.sent == []
