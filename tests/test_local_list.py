"""LocalAuthListManagement: SendLocalList, GetLocalListVersion, and the list deciding idTags.

End to end against the built-in CSMS; the offline cases take the CSMS away for real.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from test_core_profile import iso_in, running, status_of
from test_offline import next_event, preset_keys
from test_reconnect import free_port

from hilsim.csms import CentralSystem
from hilsim.evse import events
from hilsim.keys import LOCAL_LIST_MAX_LENGTH, SEND_LOCAL_LIST_MAX_LENGTH

from conftest import TAG, Bench, make_settings

OTHER = "DEADBEEF"  # the built-in CSMS accepts it too


def entry(
    id_tag: str,
    status: str | None = "Accepted",
    *,
    expiry: str | None = None,
    parent: str | None = None,
) -> dict[str, Any]:
    """One AuthorizationData, camelCase; status None: no idTagInfo (a removal)."""
    if status is None:
        return {"idTag": id_tag}
    info: dict[str, Any] = {"status": status}
    if expiry is not None:
        info["expiryDate"] = expiry
    if parent is not None:
        info["parentIdTag"] = parent
    return {"idTag": id_tag, "idTagInfo": info}


def many(prefix: str, count: int) -> list[dict[str, Any]]:
    return [entry(f"{prefix}{n:05d}") for n in range(count)]


Update = tuple[int, str, list[dict[str, Any]]]

#: (what was sent before, the update, its answer, the version after, idTags after)
UPDATES: list[tuple[str, list[Update], Update, str, int, int]] = [
    ("full into an empty list", [], (1, "Full", [entry("A"), entry("B")]), "Accepted", 1, 2),
    ("full replaces everything", [(1, "Full", [entry("A"), entry("B")])],
     (2, "Full", [entry("C")]), "Accepted", 2, 1),
    ("full may carry a lower version", [(5, "Full", [entry("A")])],
     (3, "Full", [entry("B")]), "Accepted", 3, 1),
    ("differential adds", [(1, "Full", [entry("A")])],
     (2, "Differential", [entry("B", "Blocked")]), "Accepted", 2, 2),
    ("differential updates", [(1, "Full", [entry("A")])],
     (2, "Differential", [entry("a", "Blocked")]), "Accepted", 2, 1),
    ("differential removes", [(1, "Full", [entry("A"), entry("B")])],
     (2, "Differential", [entry("A", None)]), "Accepted", 2, 1),
    ("differential removing the last leaves version 0", [(1, "Full", [entry("A")])],
     (2, "Differential", [entry("A", None)]), "Accepted", 0, 0),
    ("full and empty clears the list", [(4, "Full", [entry("A")])],
     (5, "Full", []), "Accepted", 0, 0),
    ("differential with the same version", [(2, "Full", [entry("A")])],
     (2, "Differential", [entry("B")]), "VersionMismatch", 2, 1),
    ("differential with an older version", [(3, "Full", [entry("A")])],
     (1, "Differential", [entry("B")]), "VersionMismatch", 3, 1),
    ("full entry without idTagInfo", [(1, "Full", [entry("A")])],
     (2, "Full", [entry("B", None)]), "Failed", 1, 1),
    ("an idTag twice (case-insensitively)", [],
     (1, "Full", [entry("abc"), entry("ABC", "Blocked")]), "Failed", 0, 0),
    ("version 0 for a list that is not empty", [], (0, "Full", [entry("A")]), "Failed", 0, 0),
    ("more than SendLocalListMaxLength in one update", [],
     (1, "Full", many("T", SEND_LOCAL_LIST_MAX_LENGTH + 1)), "Failed", 0, 0),
    ("exactly SendLocalListMaxLength", [],
     (1, "Full", many("T", SEND_LOCAL_LIST_MAX_LENGTH)), "Accepted", 1,
     SEND_LOCAL_LIST_MAX_LENGTH),
    ("more than LocalAuthListMaxLength in the end",
     [(n + 1, "Full" if n == 0 else "Differential", many(f"L{n}", SEND_LOCAL_LIST_MAX_LENGTH))
      for n in range(LOCAL_LIST_MAX_LENGTH // SEND_LOCAL_LIST_MAX_LENGTH)],
     (9, "Differential", [entry("ONE-MORE")]), "Failed", 4, LOCAL_LIST_MAX_LENGTH),
]


@pytest.mark.parametrize(
    ("before", "update", "answer", "version", "id_tags"),
    [case[1:] for case in UPDATES],
    ids=[case[0] for case in UPDATES],
)
async def test_send_local_list(
    bench: Bench,
    before: list[Update],
    update: Update,
    answer: str,
    version: int,
    id_tags: int,
) -> None:
    session = bench.session
    assert await session.change_configuration("LocalAuthListEnabled", "true") == "Accepted"
    for earlier in before:
        assert await session.send_local_list(*earlier) == "Accepted"
    assert await session.send_local_list(*update) == answer
    assert await session.get_local_list_version() == version
    shown = (await status_of(bench))["local_list"]
    assert shown == {"enabled": True, "version": version, "id_tags": id_tags}


async def test_an_unreadable_expiry_date_fails_the_whole_update(bench: Bench) -> None:
    session = bench.session
    assert await session.change_configuration("LocalAuthListEnabled", "true") == "Accepted"
    payload = {
        "listVersion": 1,
        "updateType": "Full",
        "localAuthorizationList": [entry("A"), entry("B", expiry="next Tuesday")],
    }
    reply = await session.call_raw(json.dumps([2, "sll-1", "SendLocalList", payload]))
    assert reply == [3, "sll-1", {"status": "Failed"}]
    assert await session.get_local_list_version() == 0


#: (LocalAuthListEnabled, what was sent while enabled, SendLocalList answer, reported version)
VERSIONS = [
    ("false", [], "NotSupported", -1),
    ("true", [], "Accepted", 0),
    ("true", [(7, "Full", [entry("A")])], "Accepted", 7),
    ("false", [(7, "Full", [entry("A")])], "NotSupported", -1),
]


@pytest.mark.parametrize(("enabled", "sent", "send_answer", "reported"), VERSIONS)
async def test_get_local_list_version(
    bench: Bench, enabled: str, sent: list[Update], send_answer: str, reported: int
) -> None:
    session = bench.session
    assert await session.change_configuration("LocalAuthListEnabled", "true") == "Accepted"
    for update in sent:
        assert await session.send_local_list(*update) == "Accepted"
    assert await session.change_configuration("LocalAuthListEnabled", enabled) == "Accepted"
    version_before = await session.get_local_list_version()
    assert version_before == reported
    assert await session.send_local_list(1, "Full", []) == send_answer
    if send_answer == "NotSupported":
        # Switched off, the list is untouched: switched on again, it is all still there.
        assert await session.change_configuration("LocalAuthListEnabled", "true") == "Accepted"
        assert await session.get_local_list_version() == (sent[0][0] if sent else 0)


async def test_the_list_survives_a_restart(csms: CentralSystem, short_dir: Path) -> None:
    settings = make_settings(short_dir, csms.url)
    async with running(settings, csms) as bench:
        session = bench.session
        assert await session.change_configuration("LocalAuthListEnabled", "true") == "Accepted"
        assert await session.send_local_list(3, "Full", [entry("A"), entry("B")]) == "Accepted"
        assert await session.send_local_list(4, "Differential", [entry("C")]) == "Accepted"
    async with running(settings, csms) as bench:
        assert await bench.session.get_local_list_version() == 4
        assert (await status_of(bench))["local_list"]["id_tags"] == 3
        assert await bench.session.send_local_list(4, "Differential", []) == "VersionMismatch"


# -- the list deciding idTags, online --------------------------------------------------------------

#: (list entry of TAG, LocalPreAuthorize, Authorize sent, LocalListConflict reported)
ONLINE = [
    (entry(TAG), "true", False, False),
    (entry(TAG), "false", True, False),
    (entry(TAG, "Blocked"), "true", True, True),
    (entry(TAG, expiry=iso_in(-60)), "true", True, True),
    (entry(TAG, parent="FLEET"), "false", True, True),  # the CSMS knows no parent for it
]


@pytest.mark.parametrize(("listed", "pre_authorize", "asks", "conflict"), ONLINE)
async def test_the_list_decides_online(
    bench: Bench, listed: dict[str, Any], pre_authorize: str, asks: bool, conflict: bool
) -> None:
    session, store = bench.session, bench.service.store
    assert store is not None
    assert await session.change_configuration("LocalAuthListEnabled", "true") == "Accepted"
    assert await session.change_configuration("LocalPreAuthorize", pre_authorize) == "Accepted"
    assert await session.send_local_list(1, "Full", [listed]) == "Accepted"
    await bench.start_local(1)
    assert any(m.action == "Authorize" for m in session.received) == asks
    if conflict:
        report = await session.wait_for("StatusNotification", lambda p: p["connectorId"] == 0)
        assert report["errorCode"] == "LocalListConflict" and report["status"] == "Available"
    else:
        assert await session.trigger_message("Heartbeat") == "Accepted"
        await session.wait_for("Heartbeat")  # all sent before it has arrived
        assert not any(
            m.payload.get("errorCode") == "LocalListConflict" for m in session.received
        )
    # An idTag on the list never goes into the authorization cache.
    assert await store.cached_id_tag(TAG) is None


async def test_without_local_auth_list_enabled_the_list_is_ignored(bench: Bench) -> None:
    session = bench.session
    assert await session.change_configuration("LocalAuthListEnabled", "true") == "Accepted"
    assert await session.send_local_list(1, "Full", [entry(TAG)]) == "Accepted"
    assert await session.change_configuration("LocalAuthListEnabled", "false") == "Accepted"
    assert await session.change_configuration("LocalPreAuthorize", "true") == "Accepted"
    await bench.start_local(1)
    assert [m.action for m in session.received].count("Authorize") == 1


# -- the list deciding idTags, offline -------------------------------------------------------------

#: (list entry of TAG or None, cache entry of TAG (status) or None, keys, starts offline)
OFFLINE = [
    (entry(TAG), None, {}, True),
    (entry(TAG, expiry=iso_in(3600)), None, {}, True),
    (entry(TAG, "Blocked"), None, {"AllowOfflineTxForUnknownId": "true"}, False),
    (entry(TAG, expiry=iso_in(-60)), None, {}, False),
    (entry(TAG), None, {"LocalAuthorizeOffline": "false"}, False),
    (entry(TAG, "Blocked"), "Accepted", {}, False),  # the list goes before the cache
    (entry(OTHER), "Accepted", {}, True),  # not on the list: the cache decides
    (None, None, {}, False),
]


@pytest.mark.parametrize(("listed", "cached", "keys", "starts"), OFFLINE)
async def test_the_list_decides_offline(
    short_dir: Path,
    listed: dict[str, Any] | None,
    cached: str | None,
    keys: dict[str, str],
    starts: bool,
) -> None:
    port = free_port()
    settings = make_settings(short_dir, f"ws://127.0.0.1:{port}")
    await preset_keys(settings, LocalAuthListEnabled="true", **keys)
    async with CentralSystem("127.0.0.1", port) as csms, running(settings, csms) as bench:
        if listed is not None:
            assert await bench.session.send_local_list(1, "Full", [listed]) == "Accepted"
        store, charger = bench.service.store, bench.service.charger
        assert store is not None and charger is not None and charger.link is not None
        if cached is not None:
            await store.cache_id_tag(TAG, cached, None, None)
        await csms.stop()
        await asyncio.wait_for(charger.link.disconnected.wait(), 5)
        decided = next_event(bench.service, events.AuthorizeResult)
        assert (await bench.ctl("plug", 1))["ok"]
        assert (await bench.ctl("tag", 1, id_tag=TAG))["ok"]
        outcome = await asyncio.wait_for(decided, 5)
        assert (outcome.state.transaction is not None) == starts
        await csms.start()  # for the teardown's checks
