"""The event catalogue: generated from the payload models, checked in, served, never stale."""

from __future__ import annotations

import inspect
import types
from typing import Any

import httpx
import jsonschema
import pytest

from app.outbox import catalogue
from app.outbox.asyncapi import (
    DOCUMENT_PATH,
    REGENERATE_COMMAND,
    CatalogueError,
    build_document,
    render,
)
from app.outbox.staging import EventPayload


def module_payloads(module: types.ModuleType) -> list[type[EventPayload]]:
    """The event payload models a module defines, found without the registry."""
    return [
        cls
        for cls in vars(module).values()
        if inspect.isclass(cls)
        and issubclass(cls, EventPayload)
        and cls.__module__ == module.__name__
        and "event_type" in cls.__dict__
    ]


def events_module(name: str, source: str) -> types.ModuleType:
    """A module of event payloads, as an engineer adding an event type would write one."""
    module = types.ModuleType(name)
    exec(f"from app.outbox.staging import EventPayload\n{source}", module.__dict__)
    return module


def test_checked_in_catalogue_matches_the_models() -> None:
    checked_in = DOCUMENT_PATH.read_text(encoding="utf-8") if DOCUMENT_PATH.exists() else ""
    assert checked_in == render(build_document()), (
        f"{DOCUMENT_PATH.name} does not match the event payload models: run "
        f"`{REGENERATE_COMMAND}` from the repository root and commit the result"
    )


def test_every_event_of_every_module_is_catalogued_with_its_recipients() -> None:
    document = build_document()
    messages = {
        key: message
        for key, message in document["components"]["messages"].items()
        if not message.get("x-ephemeral")
    }
    schemas = document["components"]["schemas"]
    expected = [cls for module in catalogue.EVENT_MODULES for cls in module_payloads(module)]
    assert {f"{c.event_type}.v{c.event_version}" for c in expected} == set(messages)
    assert len(expected) == len(messages)
    for cls in expected:
        message = messages[f"{cls.event_type}.v{cls.event_version}"]
        assert message["name"] == cls.event_type
        assert message["x-event-version"] == cls.event_version
        assert message["x-audience"] == cls.audience
        assert message["summary"] == (cls.__doc__ or "").strip()
        envelope, specific = message["payload"]["allOf"]
        assert envelope == {"$ref": "#/components/schemas/EventEnvelope"}
        assert specific["properties"]["type"] == {"const": cls.event_type}
        data_schema = schemas[specific["properties"]["data"]["$ref"].rsplit("/", 1)[1]]
        # camelCase on the wire, like the seed's contracts.
        wire_fields = {field.alias or name for name, field in cls.model_fields.items()}
        assert set(data_schema["properties"]) == wire_fields
        assert set(data_schema["required"]) <= wire_fields
        operation = document["operations"][f"send.{cls.event_type}.v{cls.event_version}"]
        assert operation["action"] == "send"


def test_the_ephemeral_signals_are_catalogued_both_ways() -> None:
    document = build_document()
    messages = document["components"]["messages"]
    schemas = document["components"]["schemas"]
    signals = {key: m for key, m in messages.items() if m.get("x-ephemeral")}
    sent = {m["name"] for key, m in signals.items() if f"send.{key}" in document["operations"]}
    received = {
        m["name"] for key, m in signals.items() if f"receive.{key}" in document["operations"]
    }
    assert sent == {
        "sync",
        "resync",
        "presence.snapshot",
        "presence.changed",
        "session.expired",
        "chat.typing",
    }
    assert received == {
        "sync.request",
        "auth.renew",
        "app.visibility",
        "chat.join",
        "chat.leave",
        "chat.typing",
    }

    # No envelope: the payload is the signal's own schema, with the wire's camelCase names.
    def properties(key: str) -> set[str]:
        ref = signals[key]["payload"]["$ref"]
        return set(schemas[ref.rsplit("/", 1)[1]]["properties"])

    assert properties("sync") == {"stream", "recovered", "replayed", "missing", "lastSeq"}
    assert properties("presence.snapshot") == {"online"}
    assert properties("client.chat.typing") == {"chatId", "typing"}
    assert properties("chat.typing") == {"chatId", "userId", "typing"}
    for message in signals.values():
        assert message["summary"]
        assert message["x-audience"]


def test_the_document_is_asyncapi_3_with_valid_schemas_and_resolvable_refs() -> None:
    document = build_document()
    assert document["asyncapi"] == "3.0.0"
    components = document["components"]

    def resolve(ref: str) -> Any:
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return node

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    for ref in refs(document):
        assert resolve(ref) is not None, ref
    for message in components["messages"].values():
        jsonschema.Draft202012Validator.check_schema(message["payload"])
    for schema in components["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_the_catalogue_follows_event_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    # Registered, but not in a listed module (a test's own payload, say): not in the contract.
    stray = events_module(
        "stray_events",
        "class Stray(EventPayload):\n"
        "    'Something only a test emits.'\n"
        "    event_type = 'stray.happened'\n"
        "    audience = 'nobody'\n"
        "    stray_id: int\n",
    )
    assert ("stray.happened", 1) in catalogue.event_types()
    assert "stray.happened.v1" not in build_document()["components"]["messages"]

    # Listed by the time the document is generated: in it, with its versions side by side.
    added = events_module(
        "gadget_events",
        "class GadgetBroken(EventPayload):\n"
        "    'A gadget broke.'\n"
        "    event_type = 'gadget.broken'\n"
        "    audience = 'the gadget owner'\n"
        "    gadget_id: int\n"
        "class GadgetBrokenV2(EventPayload):\n"
        "    'A gadget broke, and how.'\n"
        "    event_type = 'gadget.broken'\n"
        "    event_version = 2\n"
        "    audience = 'the gadget owner'\n"
        "    gadget_id: int\n"
        "    broken_part: str\n",
    )
    monkeypatch.setattr(catalogue, "EVENT_MODULES", (*catalogue.EVENT_MODULES, stray, added))
    messages = build_document()["components"]["messages"]
    assert messages["stray.happened.v1"]["x-audience"] == "nobody"
    assert messages["gadget.broken.v1"]["summary"] == "A gadget broke."
    assert messages["gadget.broken.v2"]["x-event-version"] == 2
    data_ref = messages["gadget.broken.v2"]["payload"]["allOf"][1]["properties"]["data"]["$ref"]
    v2_schema = build_document()["components"]["schemas"][data_ref.rsplit("/", 1)[1]]
    assert list(v2_schema["properties"]) == ["gadgetId", "brokenPart"]


def test_an_event_type_without_description_or_audience_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vague = events_module(
        "vague_events",
        "class Vague(EventPayload):\n    event_type = 'vague.thing'\n    thing_id: int\n",
    )
    monkeypatch.setattr(catalogue, "EVENT_MODULES", (*catalogue.EVENT_MODULES, vague))
    with pytest.raises(CatalogueError, match="no docstring") as refused:
        build_document()
    assert "vague_events.Vague" in str(refused.value)
    assert "no `audience`" in str(refused.value)


async def test_the_api_serves_the_catalogue_without_a_token(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/events/catalogue")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == build_document()
