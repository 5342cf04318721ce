"""The web process's Socket.IO packets (app/realtime/server.py: JsonPacket)."""

from __future__ import annotations

import pytest
from socketio import packet

from app.realtime.server import JsonPacket

ENVELOPE = {
    "id": "evt_7",
    "type": "task.created",
    "stream": "user:a",
    "seq": 3,
    "data": {"title": "Spülen ✓", "points": [1, 2.5, None, True], "note": 'say "hi"'},
}


def test_json_is_encoded_as_python_socketio_encodes_it() -> None:
    for data in (["task.created", ENVELOPE], ["sync", {"recovered": True}], ["resync"]):
        ours = JsonPacket(packet.EVENT, data=data, namespace="/")
        theirs = packet.Packet(packet.EVENT, data=data, namespace="/")
        assert ours.encode() == theirs.encode()


def test_bytes_are_refused_not_sent_as_attachments() -> None:
    # python-socketio's packet finds the bytes (walking all of the data) and sends them apart.
    assert isinstance(packet.Packet(packet.EVENT, data=["e", b"x"]).encode(), list)
    with pytest.raises(TypeError):
        JsonPacket(packet.EVENT, data=["e", b"x"]).encode()
