"""The events the web client's views need besides tasks, karma and claims: rewards and members
to the whole family, and who is online when a socket connects."""

from __future__ import annotations

from typing import Any

import httpx

from doubles.socket_clients import SocketRecorder
from tests.harness import ManagedProcess, add_member, connected, create_reward, signup

FAMILY_PREFIXES = ("reward.", "member.")


def family_events(recorder: SocketRecorder) -> list[tuple[str, Any]]:
    return [(name, e["data"]) for name, e in recorder.events if name.startswith(FAMILY_PREFIXES)]


async def wait_for_family_events(recorder: SocketRecorder, count: int) -> None:
    await recorder.wait_until(lambda _: len(family_events(recorder)) >= count)


async def test_reward_changes_reach_every_member_of_the_family_and_nobody_else(
    api: httpx.AsyncClient, web: str, dispatcher: ManagedProcess
) -> None:
    ada = await signup(api, "Ada")
    kim = await add_member(api, ada, "Kim", "child")
    zed = await signup(api, "Zed")
    family = [await connected(web, m) for m in (ada, kim)]
    outsider = await connected(web, zed)

    reward = await create_reward(api, ada, "Ice cream", 10)
    changed = await api.patch(
        f"/v1/rewards/{reward['id']}", headers=ada.headers, json={"karmaCost": 12}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json() == {**reward, "karmaCost": 12}
    deleted = await api.delete(f"/v1/rewards/{reward['id']}", headers=ada.headers)
    assert deleted.status_code == 204, deleted.text

    for recorder in family:
        await wait_for_family_events(recorder, 3)
        assert family_events(recorder) == [
            ("reward.created", {"rewardId": reward["id"], "reward": reward}),
            ("reward.updated", {"rewardId": reward["id"], "reward": {**reward, "karmaCost": 12}}),
            ("reward.deleted", {"rewardId": reward["id"], "familyId": ada.family_id}),
        ]
    # A marker to the outsider's own family: had the rewards reached it, they came first.
    await create_reward(api, zed, "Marker", 1)
    await wait_for_family_events(outsider, 1)
    assert [name for name, _ in family_events(outsider)] == ["reward.created"]
    assert family_events(outsider)[0][1]["reward"]["name"] == "Marker"


async def test_a_reward_with_a_pending_claim_cannot_be_deleted_and_only_parents_change_rewards(
    api: httpx.AsyncClient, web: str
) -> None:
    ada = await signup(api, "Ada")
    kim = await add_member(api, ada, "Kim", "child")
    reward = await create_reward(api, ada, "Ice cream", 5)
    granted = await api.post(
        "/v1/karma/grant",
        headers=ada.headers,
        json={"userId": kim.id, "amount": 5, "reason": "Dishes"},
    )
    assert granted.status_code == 201, granted.text
    claimed = await api.post(f"/v1/rewards/{reward['id']}/claim", headers=kim.headers)
    assert claimed.status_code == 201, claimed.text

    refused = await api.delete(f"/v1/rewards/{reward['id']}", headers=ada.headers)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "reward_claim_pending"
    by_child = await api.patch(
        f"/v1/rewards/{reward['id']}", headers=kim.headers, json={"name": "Two ice creams"}
    )
    assert by_child.status_code == 403
    empty = await api.patch(f"/v1/rewards/{reward['id']}", headers=ada.headers, json={})
    assert empty.status_code == 422

    # Decided, the claim no longer holds karma: the reward goes, and its claims with it.
    approved = await api.post(f"/v1/claims/{claimed.json()['id']}/approve", headers=ada.headers)
    assert approved.status_code == 200, approved.text
    deleted = await api.delete(f"/v1/rewards/{reward['id']}", headers=ada.headers)
    assert deleted.status_code == 204, deleted.text
    rewards = await api.get(f"/v1/families/{ada.family_id}/rewards", headers=ada.headers)
    assert rewards.json() == []


async def test_a_new_member_is_announced_to_the_whole_family(
    api: httpx.AsyncClient, web: str, dispatcher: ManagedProcess
) -> None:
    ada = await signup(api, "Ada")
    ben = await add_member(api, ada, "Ben", "parent")
    zed = await signup(api, "Zed")
    family = [await connected(web, m) for m in (ada, ben)]
    outsider = await connected(web, zed)

    kim = await add_member(api, ada, "Kim", "child")

    expected = {
        "userId": kim.id,
        "familyId": ada.family_id,
        "member": {
            "id": kim.id,
            "familyId": ada.family_id,
            "email": kim.email,
            "displayName": "Kim",
            "role": "child",
        },
    }
    for recorder in family:
        await wait_for_family_events(recorder, 1)
        assert family_events(recorder) == [("member.added", expected)]
    # The new member's stream starts empty: their first load fetches the family.
    events = await api.get("/v1/events?after=0", headers=kim.headers)
    assert events.json()["events"] == []
    await add_member(api, zed, "Marker", "child")
    await wait_for_family_events(outsider, 1)
    assert family_events(outsider)[0][1]["member"]["displayName"] == "Marker"


def snapshots(recorder: SocketRecorder) -> list[set[str]]:
    return [set(d["online"]) for name, d in recorder.received if name == "presence.snapshot"]


async def test_a_socket_learns_who_is_online_when_it_connects(
    api: httpx.AsyncClient, web: str
) -> None:
    ada = await signup(api, "Ada")
    kim = await add_member(api, ada, "Kim", "child")
    ben = await add_member(api, ada, "Ben", "parent")
    zed = await signup(api, "Zed")
    await connected(web, zed)  # online, but in another family
    kim_socket = await connected(web, kim)
    await kim_socket.wait_until(lambda _: bool(kim_socket.syncs))

    ada_socket = await connected(web, ada)
    await ada_socket.wait_until(lambda _: bool(ada_socket.syncs))

    # The snapshot comes before the catch-up's sync; Ben is offline, Zed is not family.
    assert snapshots(ada_socket) == [{ada.id, kim.id}]
    names = [name for name, _ in ada_socket.received]
    assert names.index("presence.snapshot") < names.index("sync")
    assert snapshots(kim_socket) == [{kim.id}]
    assert ben.id not in snapshots(ada_socket)[0]
