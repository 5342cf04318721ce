"""The event catalogue: an AsyncAPI 3.0 document generated from the event payload models.

    python -m app.outbox.asyncapi            print the document
    python -m app.outbox.asyncapi --write    rewrite docs/asyncapi.json (check it in)
    python -m app.outbox.asyncapi --check    exit 1 when docs/asyncapi.json is out of date

It lists every event type of every module in ``app.outbox.catalogue.EVENT_MODULES``: its
Socket.IO event name and version, what happened (the payload class's docstring), who receives
it (``audience``), and its JSON schema inside the one envelope every event travels in. It also
lists the socket's ephemeral signals (``SIGNALS``): those the server sends without an envelope
(``sync``, ``presence.changed``, ...) and the events a client sends (``chat.join``, ...).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from fastapi import APIRouter
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app.chat.schemas import ChatRef, TypingIn, TypingOut
from app.outbox import catalogue
from app.outbox.envelope import EventEnvelope
from app.outbox.staging import EventPayload
from app.realtime.signals import (
    PresenceChanged,
    PresenceSnapshot,
    RenewRequest,
    ResyncOut,
    SessionExpired,
    SyncOut,
    SyncRequest,
    VisibilityIn,
)

ASYNCAPI_VERSION = "3.0.0"
DOCUMENT_PATH = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"
REGENERATE_COMMAND = "python -m app.outbox.asyncapi --write"
CHANNEL = "events"
SCHEMA_REF = "#/components/schemas/{model}"


@dataclass(frozen=True, slots=True)
class Signal:
    """An ephemeral socket message: no envelope, no seq, not in the outbox, may be lost."""

    name: str
    model: type[BaseModel]
    # "send": the server sends it to clients; "receive": a client sends it, and gets an ack
    # `{ok: true}` or `{ok: false, error: {code, message}}`.
    action: Literal["send", "receive"]
    audience: str


SIGNALS = (
    Signal("sync", SyncOut, "send", "the socket that connected or sent `sync.request`"),
    Signal("resync", ResyncOut, "send", "the sockets in the stream's room"),
    Signal("presence.snapshot", PresenceSnapshot, "send", "the socket that connected"),
    Signal("presence.changed", PresenceChanged, "send", "the family room `family:<familyId>`"),
    Signal("session.expired", SessionExpired, "send", "the socket whose token expired"),
    Signal("chat.typing", TypingOut, "send", "the chat's room, the typist's socket aside"),
    Signal("sync.request", SyncRequest, "receive", "the server"),
    Signal("auth.renew", RenewRequest, "receive", "the server"),
    Signal("app.visibility", VisibilityIn, "receive", "the server"),
    Signal("chat.join", ChatRef, "receive", "the server (members of the chat only)"),
    Signal("chat.leave", ChatRef, "receive", "the server"),
    Signal("chat.typing", TypingIn, "receive", "the server (sockets that joined the chat)"),
)


def _signal_key(signal: Signal) -> str:
    # `chat.typing` goes both ways, with a payload each way.
    return signal.name if signal.action == "send" else f"client.{signal.name}"


def _signal_message(signal: Signal, payload_ref: dict[str, str]) -> dict[str, Any]:
    summary = " ".join((signal.model.__doc__ or "").split())
    direction = "server to client" if signal.action == "send" else "client to server"
    return {
        "name": signal.name,
        "title": f"{signal.name} ({direction}, ephemeral)",
        "summary": summary,
        "description": f"{summary}\n\nSent to: {signal.audience}. Ephemeral: no envelope, "
        "not in the outbox, may be lost.",
        "contentType": "application/json",
        "payload": payload_ref,
        "x-ephemeral": True,
        "x-audience": signal.audience,
    }


class CatalogueError(Exception):
    """An event payload model lacks what the catalogue needs to describe it."""


def catalogued_payloads() -> list[type[EventPayload]]:
    """The payload model of every event type of the modules in ``EVENT_MODULES``, sorted."""
    # Only the listed modules: a payload type defined elsewhere (a test's, say) is not part
    # of the platform's contract even when it sits in the registry.
    modules = {module.__name__ for module in catalogue.EVENT_MODULES}
    payloads = [cls for cls in catalogue.event_types().values() if cls.__module__ in modules]
    problems = [
        f"{cls.__module__}.{cls.__qualname__}: {problem}"
        for cls in payloads
        for problem in _missing_descriptions(cls)
    ]
    if problems:
        raise CatalogueError("event payload models lack descriptions:\n" + "\n".join(problems))
    return sorted(payloads, key=lambda cls: (cls.event_type, cls.event_version))


def _missing_descriptions(cls: type[EventPayload]) -> list[str]:
    problems = []
    if not (cls.__dict__.get("__doc__") or "").strip():
        problems.append("no docstring saying what happened")
    if not getattr(cls, "audience", "").strip():
        problems.append("no `audience` saying who receives it")
    return problems


def _message_key(cls: type[EventPayload]) -> str:
    return f"{cls.event_type}.v{cls.event_version}"


def _message(cls: type[EventPayload], data_ref: dict[str, str]) -> dict[str, Any]:
    summary = (cls.__doc__ or "").strip()
    return {
        "name": cls.event_type,
        "title": f"{cls.event_type} (version {cls.event_version})",
        "summary": summary,
        "description": f"{summary}\n\nSent to: {cls.audience}.",
        "contentType": "application/json",
        "payload": {
            "allOf": [
                {"$ref": SCHEMA_REF.format(model="EventEnvelope")},
                {
                    "type": "object",
                    "properties": {
                        "type": {"const": cls.event_type},
                        "version": {"const": cls.event_version},
                        "data": data_ref,
                    },
                },
            ]
        },
        "x-event-type": cls.event_type,
        "x-event-version": cls.event_version,
        "x-audience": cls.audience,
    }


def build_document() -> dict[str, Any]:
    """The AsyncAPI document of every catalogued event type."""
    payloads = catalogued_payloads()
    signal_models = list(dict.fromkeys(signal.model for signal in SIGNALS))
    models: list[type[BaseModel]] = [EventEnvelope, *payloads, *signal_models]
    # One pass over all models: shared nested models (a task inside task events) become one
    # component, and pydantic disambiguates equal class names from different modules.
    refs, definitions = models_json_schema(
        [(model, "serialization") for model in models], by_alias=True, ref_template=SCHEMA_REF
    )
    schemas = definitions.get("$defs", {})
    messages = {_message_key(cls): _message(cls, refs[(cls, "serialization")]) for cls in payloads}
    messages.update(
        (_signal_key(signal), _signal_message(signal, refs[(signal.model, "serialization")]))
        for signal in SIGNALS
    )
    actions = {_message_key(cls): "send" for cls in payloads}
    actions.update((_signal_key(signal), signal.action) for signal in SIGNALS)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Family realtime events",
            "version": "1.0.0",
            "description": (
                "Every durable event the platform delivers through its transactional outbox. "
                "A client holds one Socket.IO connection (auth `{token, lastSeq?}`); each event "
                "arrives as a Socket.IO event named by its type, with the envelope as its only "
                "argument, on the rooms of its recipients (`user:<id>`, `chat:<id>`). "
                "Also the socket's ephemeral signals (`x-ephemeral`): sent by the server without "
                "an envelope (`action: send`), or by a client (`action: receive`), which gets an "
                "ack. "
                f"Generated from the payload models: `{REGENERATE_COMMAND}`; "
                "see docs/adding-an-event.md."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "web": {
                "host": "{host}",
                "protocol": "ws",
                "pathname": "/socket.io/",
                "description": "The web process's Socket.IO endpoint (WebSocket transport).",
                "variables": {"host": {"default": "localhost:8000"}},
            }
        },
        "channels": {
            CHANNEL: {
                "address": "/",
                "title": "Socket.IO default namespace",
                "description": (
                    "The server puts each socket in its user's room and, after a membership "
                    "check, in the chat rooms it joins; an event reaches the sockets in the "
                    "rooms of its recipients."
                ),
                "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in messages},
            }
        },
        "operations": {
            f"{actions[key]}.{key}": {
                "action": actions[key],
                "channel": {"$ref": f"#/channels/{CHANNEL}"},
                "summary": message["summary"],
                "messages": [{"$ref": f"#/channels/{CHANNEL}/messages/{key}"}],
            }
            for key, message in messages.items()
        },
        "components": {
            "messages": messages,
            "schemas": dict(sorted(schemas.items())),
        },
    }


def render(document: dict[str, Any]) -> str:
    """The document as checked in: stable key order, two-space indent, final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


@cache
def served_document() -> dict[str, Any]:
    """The document, built once per process (the models do not change while it runs)."""
    return build_document()


router = APIRouter(tags=["events"])


@router.get("/events/catalogue")
async def event_catalogue() -> dict[str, Any]:
    """The event catalogue: an AsyncAPI 3.0 document of every event, its payload and recipients."""
    return served_document()


def main(
    write: Annotated[
        bool, typer.Option("--write", help="Rewrite the checked-in document.")
    ] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 when the checked-in document is stale.")
    ] = False,
    path: Annotated[Path, typer.Option(help="The checked-in document.")] = DOCUMENT_PATH,
) -> None:
    """Print the event catalogue, or write or check the checked-in copy."""
    text = render(build_document())
    if write:
        path.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {path}", err=True)
    elif check:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            typer.echo(f"{path} is out of date: run `{REGENERATE_COMMAND}`", err=True)
            raise typer.Exit(1)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    typer.run(main)
