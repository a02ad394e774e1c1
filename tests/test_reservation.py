"""Reservation: ReserveNow and CancelReservation end to end, connector 0 included."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from test_core_profile import iso_in, running, status_of

from hilsim.csms import CentralSystem
from hilsim.evse import events

from conftest import TAG, Bench, make_settings

OTHER = "DEADBEEF"  # known to the built-in CSMS
FRIEND = "F00D"  # made known below, with the parent the reservation names
STRANGER = "BAD1"  # made known below, with another parent

Setup = Callable[[Bench], Awaitable[Any]]


async def idle(bench: Bench) -> None:
    return None


async def faulted(bench: Bench) -> None:
    assert (await bench.ctl("fault", 1))["ok"]
    await bench.status(1, "Faulted")


async def inoperative(bench: Bench) -> None:
    assert await bench.session.change_availability(1, "Inoperative") == "Accepted"
    await bench.status(1, "Unavailable")


async def plugged(bench: Bench) -> None:
    assert (await bench.ctl("plug", 1))["ok"]
    await bench.status(1, "Preparing")


async def charging(bench: Bench) -> None:
    await bench.start_local(1)


async def reserved_by_another(bench: Bench) -> None:
    assert await bench.session.reserve_now(1, iso_in(600), OTHER, 41) == "Accepted"
    await bench.status(1, "Reserved")


async def reserved_by_the_same_id(bench: Bench) -> None:
    assert await bench.session.reserve_now(1, iso_in(600), OTHER, 42) == "Accepted"
    await bench.status(1, "Reserved")


#: (how connector 1 is, connector, expiry in s, answer, connector 1's status afterwards)
RESERVATIONS: list[tuple[Setup, int, float, str, str]] = [
    (idle, 1, 600, "Accepted", "Reserved"),
    (faulted, 1, 600, "Faulted", "Faulted"),
    (inoperative, 1, 600, "Unavailable", "Unavailable"),
    (plugged, 1, 600, "Occupied", "Preparing"),
    (charging, 1, 600, "Occupied", "Charging"),
    (reserved_by_another, 1, 600, "Occupied", "Reserved"),
    (reserved_by_the_same_id, 1, 600, "Accepted", "Reserved"),  # replaced (5.13)
    (idle, 3, 600, "Rejected", "Available"),
    (idle, 1, -5, "Rejected", "Available"),
]


@pytest.mark.parametrize(
    ("setup", "connector", "expires_in", "answer", "after"),
    RESERVATIONS,
    ids=[f"{case[0].__name__}-C{case[1]}-{case[3]}" for case in RESERVATIONS],
)
async def test_reserve_now(
    bench: Bench, setup: Setup, connector: int, expires_in: float, answer: str, after: str
) -> None:
    await setup(bench)
    expiry = iso_in(expires_in)
    assert await bench.session.reserve_now(connector, expiry, TAG, 42) == answer
    if answer == "Accepted" and setup is idle:
        await bench.status(1, "Reserved")
    shown = await status_of(bench)
    assert shown["connectors"][0]["status"] == after
    reservations = {r["reservation_id"]: r for r in shown["reservations"]}
    if answer == "Accepted":
        assert reservations[42]["id_tag"] == TAG and reservations[42]["connector_id"] == 1
    elif setup is not reserved_by_another:
        assert reservations == {}


async def both(bench: Bench, setup: Setup) -> None:
    """Put connector 2 into the same state as ``setup`` puts connector 1."""
    await setup(bench)
    if setup is faulted:
        assert (await bench.ctl("fault", 2))["ok"]
        await bench.status(2, "Faulted")
    elif setup is inoperative:
        assert await bench.session.change_availability(2, "Inoperative") == "Accepted"
        await bench.status(2, "Unavailable")
    elif setup is plugged:
        assert (await bench.ctl("plug", 2))["ok"]
        await bench.status(2, "Preparing")


#: connector 0: (what both connectors are, answer)
WHOLE = [(idle, "Accepted"), (faulted, "Faulted"), (inoperative, "Unavailable"),
         (plugged, "Occupied")]


@pytest.mark.parametrize(("setup", "answer"), WHOLE, ids=[c[0].__name__ for c in WHOLE])
async def test_reserve_the_charge_point(bench: Bench, setup: Setup, answer: str) -> None:
    await both(bench, setup)
    assert await bench.session.reserve_now(0, iso_in(600), TAG, 7) == answer
    shown = await status_of(bench)
    assert [r["reservation_id"] for r in shown["reservations"]] == ([7] if answer == "Accepted"
                                                                    else [])


async def test_a_charge_point_reservation_keeps_the_last_free_connector(bench: Bench) -> None:
    session = bench.session
    assert await session.reserve_now(0, iso_in(600), TAG, 7) == "Accepted"
    # Two connectors free: neither is set aside.
    assert (await status_of(bench))["reservations"][0]["placed_on"] is None
    assert (await bench.ctl("plug", 1))["ok"]
    await bench.status(1, "Preparing")
    await bench.status(2, "Reserved")  # the last free one is kept for TAG
    assert (await status_of(bench))["reservations"][0]["placed_on"] == 2
    refused = await bench.ctl("tag", 2, id_tag=OTHER)
    assert not refused["ok"] and "reserved" in refused["error"]
    assert (await bench.ctl("plug", 2))["ok"]  # plugged in, it stays Reserved for TAG
    assert (await bench.ctl("tag", 2, id_tag=TAG))["ok"]
    start = await session.wait_for("StartTransaction", lambda p: p["connectorId"] == 2)
    assert start["idTag"] == TAG and start["reservationId"] == 7
    await bench.status(2, "Charging")
    assert (await status_of(bench))["reservations"] == []


async def test_charge_point_reservations_are_placed_soonest_expiry_first(bench: Bench) -> None:
    """By the instant, not the text: +05:00 sorts after Z as text but expires first here."""
    soon = (datetime.now(UTC) + timedelta(seconds=600)).astimezone(timezone(timedelta(hours=5)))
    assert await bench.session.reserve_now(0, iso_in(900), TAG, 7) == "Accepted"
    assert await bench.session.reserve_now(0, soon.isoformat(), OTHER, 8) == "Accepted"
    # Two reservations, two free connectors: both are held, the soonest on the first.
    await bench.status(1, "Reserved")
    await bench.status(2, "Reserved")
    placed = {r["reservation_id"]: r["placed_on"] for r in (await status_of(bench))["reservations"]}
    assert placed == {8: 1, 7: 2}


async def test_a_charge_point_reservation_is_used_on_any_connector(bench: Bench) -> None:
    assert await bench.session.reserve_now(0, iso_in(600), TAG, 8) == "Accepted"
    await bench.start_local(1)
    assert bench.starts[1]["reservationId"] == 8
    assert (await status_of(bench))["reservations"] == []
    # The other connector was never set aside and is free for anyone.
    await bench.start_local(2, OTHER)
    assert "reservationId" not in bench.starts[2]


#: (reservation's parentIdTag, idTag presented, its parent at the CSMS, starts with it)
ADMISSIONS = [
    (None, TAG, None, True),
    ("FLEET", TAG, None, True),
    ("FLEET", FRIEND, "FLEET", True),
    ("FLEET", STRANGER, "OTHERS", False),
    (None, OTHER, None, False),
]


@pytest.mark.parametrize(("parent", "presented", "its_parent", "admitted"), ADMISSIONS)
async def test_only_the_reserving_id_tag_or_its_parent_may_start(
    bench: Bench, parent: str | None, presented: str, its_parent: str | None, admitted: bool
) -> None:
    csms = bench.csms
    csms.id_tags |= {FRIEND, STRANGER}
    if its_parent is not None:
        csms.id_tag_details[presented] = {"parentIdTag": its_parent}
    session = bench.session
    assert await session.reserve_now(1, iso_in(600), TAG, 9, parent) == "Accepted"
    await bench.status(1, "Reserved")
    assert (await bench.ctl("plug", 1))["ok"]
    if admitted:
        assert (await bench.ctl("tag", 1, id_tag=presented))["ok"]
        start = await session.wait_for("StartTransaction")
        assert start["idTag"] == presented and start["reservationId"] == 9
        await bench.status(1, "Charging")
        return
    if parent is None:  # nothing to ask the CSMS: refused at the reader
        answer = await bench.ctl("tag", 1, id_tag=presented)
        assert not answer["ok"] and "reserved for another idTag" in answer["error"]
    else:  # the parent is learnt from Authorize, then the idTag is turned away
        decided = bench.next_event(events.AuthorizeResult, 1)
        assert (await bench.ctl("tag", 1, id_tag=presented))["ok"]
        outcome = await asyncio.wait_for(decided, 5)
        assert outcome.state.transaction is None
        assert any(m.action == "Authorize" for m in session.received)
    assert not any(m.action == "StartTransaction" for m in session.received)
    assert (await status_of(bench))["reservations"][0]["reservation_id"] == 9


#: (reservation to cancel, answer, connector 1's status afterwards)
CANCELS = [(5, "Accepted", "Available"), (6, "Rejected", "Reserved")]


@pytest.mark.parametrize(("reservation_id", "answer", "after"), CANCELS)
async def test_cancel_reservation(
    bench: Bench, reservation_id: int, answer: str, after: str
) -> None:
    assert await bench.session.reserve_now(1, iso_in(600), TAG, 5) == "Accepted"
    await bench.status(1, "Reserved")
    assert await bench.session.cancel_reservation(reservation_id) == answer
    if answer == "Accepted":
        await bench.status(1, "Available")
    assert (await status_of(bench))["connectors"][0]["status"] == after


async def test_cancel_a_charge_point_reservation(bench: Bench) -> None:
    assert await bench.session.reserve_now(0, iso_in(600), TAG, 5) == "Accepted"
    assert await bench.session.cancel_reservation(5) == "Accepted"
    assert await bench.session.cancel_reservation(5) == "Rejected"
    assert (await status_of(bench))["reservations"] == []


@pytest.mark.parametrize("connector", [1, 0])
async def test_a_reservation_expires(bench: Bench, connector: int) -> None:
    if connector == 0:
        assert (await bench.ctl("plug", 2))["ok"]  # one free connector left: it gets placed
        await bench.status(2, "Preparing")
    assert await bench.session.reserve_now(connector, iso_in(1.0), TAG, 11) == "Accepted"
    await bench.status(1, "Reserved")
    await bench.status(1, "Available", timeout=5)  # on its own, at its expiryDate
    assert (await status_of(bench))["reservations"] == []


async def test_a_reservation_moves_with_its_id(bench: Bench) -> None:
    assert await bench.session.reserve_now(1, iso_in(600), TAG, 12) == "Accepted"
    await bench.status(1, "Reserved")
    assert await bench.session.reserve_now(2, iso_in(600), TAG, 12) == "Accepted"
    await bench.status(2, "Reserved")
    await bench.status(1, "Available")
    (shown,) = (await status_of(bench))["reservations"]
    assert shown["connector_id"] == 2


async def test_reservations_survive_a_restart(csms: CentralSystem, short_dir: Path) -> None:
    settings = make_settings(short_dir, csms.url)
    async with running(settings, csms) as bench:
        assert await bench.session.reserve_now(2, iso_in(600), TAG, 21, "FLEET") == "Accepted"
        assert await bench.session.reserve_now(0, iso_in(600), OTHER, 22) == "Accepted"
        await bench.status(2, "Reserved")
    async with running(settings, csms) as bench:
        boot = [m.payload for m in bench.session.received if m.action == "StatusNotification"]
        # Connector 1 is the last free one: the charge point reservation keeps it, at once.
        assert {(p["connectorId"], p["status"]) for p in boot} == {
            (0, "Available"),
            (1, "Reserved"),
            (2, "Reserved"),
        }
        shown = {r["reservation_id"]: r for r in (await status_of(bench))["reservations"]}
        assert shown[21]["parent_id_tag"] == "FLEET" and shown[21]["connector_id"] == 2
        assert shown[22]["connector_id"] == 0 and shown[22]["placed_on"] == 1
