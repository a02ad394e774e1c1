"""The Core profile's CSMS commands, end to end against the built-in CSMS.

ChangeAvailability, Reset, UnlockConnector, ClearCache, DataTransfer and the complete set of
Core configuration keys: one table per action with a row per status it can return.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_systemd_service import NotifySocket, edit, running_hilsim

from hilsim.clock import parse_iso
from hilsim.config import Settings, parse_settings
from hilsim.csms import CentralSystem, ChargePointSession
from hilsim.keys import SPECS
from hilsim.restart import BOOT_REASON_VARIABLE, boot_reason_after_restart, command_line

from conftest import CP_ID, TAG, Bench, make_settings, start_service, stop_service


def iso_in(seconds: float) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def settings_with(directory: Path, csms_url: str, connector_lines: dict[int, str]) -> Settings:
    """make_settings, with extra lines in the [[connector]] tables (e.g. unlock = "failed")."""
    settings = make_settings(directory, csms_url)
    path = Path(settings.source)
    text = path.read_text()
    for connector_id, lines in connector_lines.items():
        table = f"[[connector]]\nid = {connector_id}\n"
        assert table in text
        text = text.replace(table, f"{table}{lines}\n")
    path.write_text(text)
    return parse_settings(text, str(path))


@contextlib.asynccontextmanager
async def running(settings: Settings, csms: CentralSystem) -> AsyncIterator[Bench]:
    """A charge point from these settings, connected, every connector's status reported."""
    service, task = await start_service(settings)
    try:
        session = await csms.wait_for_charge_point(CP_ID, timeout=5)
        bench = Bench(settings, service, csms, session, task)
        for connector in range(len(settings.connectors) + 1):
            await session.wait_for(
                "StatusNotification", lambda p, c=connector: p["connectorId"] == c
            )
        yield bench
    finally:
        await stop_service(service, task)
    assert session.violations == []


async def status_of(bench: Bench) -> dict[str, Any]:
    answer = await bench.ctl("status")
    assert answer["ok"], answer
    result: dict[str, Any] = answer["result"]
    return result


def statuses_after(session: ChargePointSession, index: int) -> list[tuple[int, str]]:
    """(connectorId, status) of every StatusNotification received from message ``index`` on."""
    return [
        (m.payload["connectorId"], m.payload["status"])
        for m in session.received[index:]
        if m.action == "StatusNotification"
    ]


async def until(condition: Callable[[], bool], event: Callable[[], Awaitable[Any]]) -> None:
    """Await ``event`` until ``condition`` holds (each await is itself bounded by a timeout)."""
    while not condition():
        await event()


# -- ChangeAvailability ----------------------------------------------------------------------------

#: (connector, type, transaction on C1 first, answer, statuses that follow at once)
AVAILABILITY = [
    (1, "Inoperative", False, "Accepted", [(1, "Unavailable")]),
    (2, "Inoperative", False, "Accepted", [(2, "Unavailable")]),
    (1, "Inoperative", True, "Scheduled", []),
    (2, "Inoperative", True, "Accepted", [(2, "Unavailable")]),
    (0, "Inoperative", False, "Accepted", [(1, "Unavailable"), (2, "Unavailable"),
                                           (0, "Unavailable")]),
    (0, "Inoperative", True, "Scheduled", [(2, "Unavailable"), (0, "Unavailable")]),
    (1, "Operative", False, "Accepted", []),
    (0, "Operative", True, "Accepted", []),
    (3, "Inoperative", False, "Rejected", []),
    (3, "Operative", False, "Rejected", []),
]


@pytest.mark.parametrize(("connector", "kind", "charging", "answer", "follows"), AVAILABILITY)
async def test_change_availability(
    bench: Bench,
    connector: int,
    kind: str,
    charging: bool,
    answer: str,
    follows: list[tuple[int, str]],
) -> None:
    if charging:
        await bench.start_local(1)
    before = len(bench.session.received)
    assert await bench.session.change_availability(connector, kind) == answer
    for cid, status in follows:
        await bench.status(cid, status)
    # A Trigger makes sure nothing else was on its way: everything sent before it has arrived.
    assert await bench.session.trigger_message("Heartbeat") == "Accepted"
    await bench.session.wait_for("Heartbeat")
    assert sorted(statuses_after(bench.session, before)) == sorted(follows)
    shown = (await status_of(bench))["availability"]
    if answer != "Rejected":
        assert shown[str(connector)]["set"] == kind


async def test_a_scheduled_change_applies_when_the_transaction_ends(bench: Bench) -> None:
    await bench.start_local(1)
    assert await bench.session.change_availability(1, "Inoperative") == "Scheduled"
    assert (await status_of(bench))["availability"]["1"]["scheduled"] == "Inoperative"
    assert (await bench.ctl("unplug", 1))["ok"]
    stop = await bench.session.wait_for("StopTransaction")
    assert stop["reason"] == "EVDisconnected"
    await bench.status(1, "Unavailable")
    shown = (await status_of(bench))["availability"]["1"]
    assert shown == {"set": "Inoperative", "scheduled": None}
    # Unavailable refuses a driver; Operative makes it usable again.
    refused = await bench.ctl("plug", 1)
    assert refused["ok"]  # a cable can always be plugged in...
    tagged = await bench.ctl("tag", 1, id_tag=TAG)
    assert not tagged["ok"] and "unavailable" in tagged["error"]  # ...but nobody may charge
    assert await bench.session.change_availability(1, "Operative") == "Accepted"
    await bench.status(1, "Preparing")


async def test_inoperative_survives_a_restart(csms: CentralSystem, short_dir: Path) -> None:
    settings = make_settings(short_dir, csms.url)
    async with running(settings, csms) as bench:
        assert await bench.session.change_availability(2, "Inoperative") == "Accepted"
        await bench.status(2, "Unavailable")
        assert await bench.session.change_availability(0, "Inoperative") == "Accepted"
        await bench.status(0, "Unavailable")
    async with running(settings, csms) as bench:
        boot = {
            m.payload["connectorId"]: m.payload["status"]
            for m in bench.session.received
            if m.action == "StatusNotification"
        }
        assert boot == {0: "Unavailable", 1: "Unavailable", 2: "Unavailable"}
        assert await bench.session.change_availability(0, "Operative") == "Accepted"
        await bench.status(1, "Available")
        await bench.status(0, "Available")
        shown = await status_of(bench)
        assert shown["charge_point_status"] == "Available"
        assert [c["status"] for c in shown["connectors"]] == ["Available", "Unavailable"]


# -- Reset -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("charging", [False, True])
async def test_reset_soft_stops_transactions_and_connects_again(
    bench: Bench, charging: bool
) -> None:
    if charging:
        await bench.start_local(1)
    assert await bench.session.reset("Soft") == "Accepted"
    if charging:
        stop = await bench.session.wait_for("StopTransaction")
        assert stop["reason"] == "SoftReset"
    again = await bench.csms.wait_for_charge_point(CP_ID, timeout=10)
    await again.wait_for("BootNotification")
    await again.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
    assert not bench.task.done()  # the same process goes on
    assert (await status_of(bench))["reset"] is None
    assert again.violations == []


async def test_a_second_reset_while_one_runs_is_rejected(bench: Bench) -> None:
    await bench.session.change_configuration("TransactionMessageRetryInterval", "600")
    await bench.start_local(1)
    # The StopTransaction of the reset is refused once, so the reset waits for it (up to 5 s).
    bench.csms.refuse_next["StopTransaction"] = 1
    assert await bench.session.reset("Soft") == "Accepted"
    await bench.session.wait_for("StopTransaction")
    assert (await status_of(bench))["reset"] == "Soft"
    assert await bench.session.reset("Hard") == "Rejected"
    assert await bench.session.reset("Soft") == "Rejected"
    again = await bench.csms.wait_for_charge_point(CP_ID, timeout=15)
    await again.wait_for("BootNotification")


async def test_reset_hard_ends_the_service_with_reason_hard_reset(bench: Bench) -> None:
    await bench.start_local(2)
    assert await bench.session.reset("Hard") == "Accepted"
    stop = await bench.session.wait_for("StopTransaction")
    assert stop["reason"] == "HardReset"
    await asyncio.wait_for(bench.task, 10)  # run() returns; `hilsim run` then re-execs
    assert bench.service.restart_requested


def test_the_restart_runs_the_same_interpreter_with_the_same_arguments() -> None:
    line = command_line()
    assert line[0] == sys.executable
    assert line[1:] == sys.orig_argv[1:]


async def test_reset_hard_starts_the_program_afresh(
    csms: CentralSystem, short_dir: Path
) -> None:
    """A real `hilsim run`: the new run reads the config file again and boots again."""
    async with running_hilsim(short_dir, csms.url) as child:
        session = await csms.wait_for_charge_point(CP_ID, timeout=15)
        first_boot = await session.wait_for("BootNotification")
        assert first_boot["firmwareVersion"] == "9.9.9"
        pid = child.process.pid
        await session.wait_for("StatusNotification", lambda p: p["connectorId"] == 2)
        assert (await child.ctl("plug", connector=1))["ok"]
        assert (await child.ctl("tag", connector=1, id_tag=TAG))["ok"]
        await session.wait_for("StartTransaction")
        await session.wait_for(
            "StatusNotification", lambda p: p["connectorId"] == 1 and p["status"] == "Charging"
        )
        # What the new run must find: a changed file proves it was read again from scratch.
        edit(child.config, lambda text: text.replace('"9.9.9"', '"10.0.0"'))
        assert await session.reset("Hard") == "Accepted"
        stop = await session.wait_for("StopTransaction")
        assert stop["reason"] == "HardReset"
        await child.line(r"Reset Hard: starting afresh", timeout=15)
        again = await csms.wait_for_charge_point(CP_ID, timeout=20)
        boot = await again.wait_for("BootNotification", timeout=20)
        assert boot["firmwareVersion"] == "10.0.0"
        assert child.process.returncode is None and child.process.pid == pid  # exec: same PID
        await again.wait_for("StatusNotification", lambda p: p["connectorId"] == 1)
        status = await child.ctl("status")
        assert status["ok"] and status["result"]["connectors"][0]["transaction_id"] is None
        child.signal(signal.SIGTERM)
        assert await child.exit_status() == 0
        assert session.violations == [] and again.violations == []


async def test_a_2_0_1_reset_immediate_boots_again_saying_remote_reset(
    csms: CentralSystem, short_dir: Path
) -> None:
    """The new run is a new process image: the reason crosses the exec, not memory."""
    settings = make_settings(short_dir, csms.url, extra_charge_point='ocpp_version = "2.0.1"')
    async with running_hilsim(short_dir, csms.url, config=Path(settings.source)) as child:
        session = await csms.wait_for_charge_point(CP_ID, timeout=15)
        assert (await session.wait_for("BootNotification"))["reason"] == "PowerUp"
        pid = child.process.pid
        assert await session.call_action("Reset", {"type": "Immediate"}) == {"status": "Accepted"}
        await child.line(r"Reset Hard: starting afresh", timeout=15)
        again = await csms.wait_for_charge_point(CP_ID, timeout=20)
        assert (await again.wait_for("BootNotification", timeout=20))["reason"] == "RemoteReset"
        assert child.process.pid == pid
        child.signal(signal.SIGTERM)
        assert await child.exit_status() == 0
        assert session.violations == [] and again.violations == []


@pytest.mark.parametrize(
    ("inherited", "reason"),
    [(None, "PowerUp"), ("RemoteReset", "RemoteReset"), ("FirmwareUpdate", "FirmwareUpdate"),
     ("Watchdog; rm -rf", "PowerUp"), ("", "PowerUp")],
)  # fmt: skip
def test_the_boot_reason_is_taken_once_and_only_if_known(
    monkeypatch: pytest.MonkeyPatch, inherited: str | None, reason: str
) -> None:
    if inherited is None:
        monkeypatch.delenv(BOOT_REASON_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(BOOT_REASON_VARIABLE, inherited)
    assert boot_reason_after_restart() == reason
    assert BOOT_REASON_VARIABLE not in os.environ  # a child process does not inherit it
    assert boot_reason_after_restart() == "PowerUp"


async def test_reset_hard_under_systemd_says_reloading_then_ready(
    csms: CentralSystem, short_dir: Path
) -> None:
    notify = NotifySocket(short_dir / "notify.sock")
    try:
        async with running_hilsim(short_dir, csms.url, notify=notify) as child:
            await notify.expect(lambda n: "READY=1" in n)
            session = await csms.wait_for_charge_point(CP_ID, timeout=15)
            await session.wait_for("BootNotification")
            assert await session.reset("Hard") == "Accepted"
            reloading = await notify.expect(lambda n: "RELOADING=1" in n, timeout=15)
            assert reloading.assignments["STATUS"] == "hard reset: restarting"
            await notify.expect(lambda n: "READY=1" in n, timeout=20)
            assert all("STOPPING=1" not in n for n in notify.received)
            again = await csms.wait_for_charge_point(CP_ID, timeout=20)
            await again.wait_for("BootNotification")
            child.signal(signal.SIGTERM)
            assert await child.exit_status() == 0
    finally:
        notify.close()


# -- UnlockConnector -------------------------------------------------------------------------------

#: (the lock's configured outcome, transaction running, answer, StopTransaction reason or None)
UNLOCKS = [
    ("unlocked", False, "Unlocked", None),
    ("unlocked", True, "Unlocked", "UnlockCommand"),
    ("failed", False, "UnlockFailed", None),
    ("failed", True, "UnlockFailed", "UnlockCommand"),
    ("not_supported", False, "NotSupported", None),
    ("not_supported", True, "NotSupported", None),
]


@pytest.mark.parametrize(("lock", "charging", "answer", "reason"), UNLOCKS)
async def test_unlock_connector(
    csms: CentralSystem,
    short_dir: Path,
    lock: str,
    charging: bool,
    answer: str,
    reason: str | None,
) -> None:
    settings = settings_with(short_dir, csms.url, {1: f'unlock = "{lock}"'})
    assert settings.connector(1).unlock == lock and settings.connector(2).unlock == "unlocked"
    async with running(settings, csms) as bench:
        if charging:
            await bench.start_local(1)
        assert await bench.session.unlock_connector(1) == answer
        if reason is not None:
            stop = await bench.session.wait_for("StopTransaction")
            assert stop["reason"] == reason
            await bench.status(1, "Finishing")
        elif charging:
            # NotSupported: nothing happens; the transaction goes on.
            assert await bench.session.trigger_message("StatusNotification", 1) == "Accepted"
            await bench.status(1, "Charging")
            assert not any(m.action == "StopTransaction" for m in bench.session.received)


@pytest.mark.parametrize("connector", [0, 3])
async def test_unlock_of_a_connector_that_is_not_there_is_not_supported(
    bench: Bench, connector: int
) -> None:
    assert await bench.session.unlock_connector(connector) == "NotSupported"


def test_an_unknown_unlock_outcome_is_a_config_error(short_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"connector\[1\]\.unlock: expected one of 'unlocked'"):
        settings_with(short_dir, "ws://127.0.0.1:9", {1: 'unlock = "maybe"'})


# -- ClearCache ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cache_enabled", "answer"), [("true", "Accepted"), ("false", "Rejected")])
async def test_clear_cache(bench: Bench, cache_enabled: str, answer: str) -> None:
    store = bench.service.store
    assert store is not None
    await bench.start_local(1)  # Authorize and StartTransaction feed the cache
    assert (await store.cached_id_tag(TAG)) is not None
    status = await bench.session.change_configuration("AuthorizationCacheEnabled", cache_enabled)
    assert status == "Accepted"
    assert await bench.session.clear_cache() == answer
    cached = await store.cached_id_tag(TAG)
    assert (cached is None) == (answer == "Accepted")


# -- the authorization cache: fed by every IdTagInfo, honouring expiryDate ------------------------


async def test_stop_transactions_id_tag_info_feeds_the_cache(bench: Bench) -> None:
    store, charger = bench.service.store, bench.service.charger
    assert store is not None and charger is not None and charger.outbox is not None
    await bench.start_local(1)
    assert (await store.cached_id_tag(TAG)).status == "Accepted"  # type: ignore[union-attr]
    bench.csms.id_tag_details[TAG] = {"status": "Blocked"}
    assert (await bench.ctl("tag", 1, id_tag=TAG))["ok"]  # the same tag stops it: idTag sent
    stop = await bench.session.wait_for("StopTransaction")
    assert stop["idTag"] == TAG
    await asyncio.wait_for(charger.outbox.drained(), 5)
    await asyncio.gather(*list(charger._tasks))
    cached = await store.cached_id_tag(TAG)
    assert cached is not None and cached.status == "Blocked"


@pytest.mark.parametrize(("expires_in", "asks_again"), [(-60, True), (3600, False), (None, False)])
async def test_the_cache_honours_expiry_date(
    bench: Bench, expires_in: float | None, asks_again: bool
) -> None:
    assert await bench.session.change_configuration("LocalPreAuthorize", "true") == "Accepted"
    if expires_in is not None:
        bench.csms.id_tag_details[TAG] = {"expiryDate": iso_in(expires_in)}
    tx = await bench.start_local(1)
    assert await bench.session.remote_stop(tx) == "Accepted"
    await bench.session.wait_for("StopTransaction")
    assert (await bench.ctl("unplug", 1))["ok"]
    await bench.status(1, "Available")
    await bench.start_local(1)
    authorizes = [m for m in bench.session.received if m.action == "Authorize"]
    assert len(authorizes) == (2 if asks_again else 1)


# -- DataTransfer ----------------------------------------------------------------------------------

#: (vendorId, messageId, data, answer)
TRANSFERS = [
    ("hilsim", "Echo", "hello", "Accepted"),
    ("HILSIM", "Echo", None, "Accepted"),
    ("hilsim", "Status", None, "Accepted"),
    ("hilsim", "Status", "2", "Accepted"),
    ("hilsim", "Status", "7", "Rejected"),
    ("hilsim", "Launch", None, "UnknownMessageId"),
    ("hilsim", None, "x", "UnknownMessageId"),
    ("acme", "Echo", "hello", "UnknownVendorId"),
]


@pytest.mark.parametrize(("vendor", "message", "data", "answer"), TRANSFERS)
async def test_data_transfer(
    bench: Bench, vendor: str, message: str | None, data: str | None, answer: str
) -> None:
    reply = await bench.session.data_transfer(vendor, message, data)
    assert reply["status"] == answer
    if answer != "Accepted":
        assert "data" not in reply
    elif message == "Echo":
        assert reply.get("data") == data
    elif data is None:
        assert json.loads(reply["data"])["charge_point"] == CP_ID
    else:
        assert json.loads(reply["data"])["id"] == int(data)


# -- configuration keys ----------------------------------------------------------------------------


async def test_get_configuration_returns_every_core_key_with_its_accessibility(
    bench: Bench,
) -> None:
    config = await bench.session.get_configuration()
    entries = {entry["key"]: entry for entry in config["configurationKey"]}
    assert set(entries) == {spec.name for spec in SPECS}
    assert entries["NumberOfConnectors"] == {"key": "NumberOfConnectors", "readonly": True,
                                             "value": "2"}
    assert entries["SupportedFeatureProfiles"]["readonly"] is True
    assert "Reservation" in entries["SupportedFeatureProfiles"]["value"].split(",")
    assert entries["ReserveConnectorZeroSupported"]["value"] == "true"
    assert entries["StopTransactionOnInvalidId"]["readonly"] is False
    assert all(e["readonly"] == lookup_readonly(e["key"]) for e in entries.values())


def lookup_readonly(name: str) -> bool:
    return next(spec.readonly for spec in SPECS if spec.name == name)


@pytest.mark.parametrize(
    ("key", "value", "answer"),
    [
        ("NumberOfConnectors", "4", "Rejected"),
        ("SupportedFeatureProfiles", "Core", "Rejected"),
        ("LocalAuthListMaxLength", "5", "Rejected"),
        ("MeterValuesSampledData", "Energy.Active.Import.Register,SoC", "Accepted"),
        ("MeterValuesSampledData", "Temperature", "Rejected"),
        ("ResetRetries", "2", "Rejected"),  # no effect in hilsim: read-only
    ],
)
async def test_change_configuration_of_core_keys(
    bench: Bench, key: str, value: str, answer: str
) -> None:
    before = (await bench.session.get_configuration([key]))["configurationKey"][0]["value"]
    assert await bench.session.change_configuration(key, value) == answer
    after = (await bench.session.get_configuration([key]))["configurationKey"][0]["value"]
    assert after == (value if answer == "Accepted" else before)


#: Optional Core keys hilsim has nothing to apply to (no cable lock, a reset that cannot fail,
#: fixed blink patterns, one LED brightness): reported read-only, never Accepted for nothing.
NO_EFFECT_KEYS = (
    "UnlockConnectorOnEVSideDisconnect",
    "ResetRetries",
    "BlinkRepeat",
    "LightIntensity",
)


async def test_keys_without_an_effect_are_read_only_over_the_wire(bench: Bench) -> None:
    got = await bench.session.get_configuration(list(NO_EFFECT_KEYS))
    entries = {e["key"]: e for e in got["configurationKey"]}
    assert sorted(entries) == sorted(NO_EFFECT_KEYS)
    assert all(e["readonly"] is True for e in entries.values())
    for key, value in [
        ("UnlockConnectorOnEVSideDisconnect", "false"),
        ("ResetRetries", "2"),
        ("BlinkRepeat", "5"),
        ("LightIntensity", "50"),
    ]:
        assert await bench.session.change_configuration(key, value) == "Rejected", key
    again = await bench.session.get_configuration(list(NO_EFFECT_KEYS))
    assert again["configurationKey"] == got["configurationKey"]


async def test_get_configuration_answers_at_most_get_configuration_max_keys(bench: Bench) -> None:
    """OCPP 1.6 5.8: the charge point may limit a request's keys to GetConfigurationMaxKeys;
    hilsim answers the first that many names, so the ones past the limit are in neither list."""
    got = await bench.session.get_configuration(["GetConfigurationMaxKeys"])
    limit = int(got["configurationKey"][0]["value"])
    unknown = [f"NoSuchKey{i}" for i in range(limit - 2)]
    names = ["HeartbeatInterval", *unknown, "NumberOfConnectors", "ConnectionTimeOut"]
    assert len(names) == limit + 1
    answer = await bench.session.get_configuration(names)
    assert [e["key"] for e in answer["configurationKey"]] == [
        "HeartbeatInterval",
        "NumberOfConnectors",
    ]
    assert answer["unknownKey"] == unknown
    # Exactly the limit is answered in full.
    answer = await bench.session.get_configuration(names[1:])
    assert [e["key"] for e in answer["configurationKey"]] == [
        "NumberOfConnectors",
        "ConnectionTimeOut",
    ]


@pytest.mark.parametrize(
    ("measurands", "expected"),
    [
        ("Energy.Active.Import.Register", ["Energy.Active.Import.Register"]),
        ("SoC,Power.Active.Import", ["Power.Active.Import", "SoC"]),
        ("Power.Offered,Current.Offered", ["Power.Offered", "Current.Offered"]),
    ],
)
async def test_meter_values_carry_the_configured_measurands(
    bench: Bench, measurands: str, expected: list[str]
) -> None:
    session = bench.session
    assert await session.change_configuration("MeterValuesSampledData", measurands) == "Accepted"
    assert await session.change_configuration("MeterValueSampleInterval", "1") == "Accepted"
    await bench.start_local(1)
    sample = await session.wait_for("MeterValues", lambda p: "transactionId" in p)
    values = sample["meterValue"][0]["sampledValue"]
    assert [v["measurand"] for v in values] == expected
    if "Power.Offered" in expected:
        assert float(values[0]["value"]) == 11000.0 and values[0]["unit"] == "W"
        assert float(values[1]["value"]) == pytest.approx(11000.0 / 230.0, abs=0.01)


# -- keys that change what a transaction does ------------------------------------------------------


@pytest.mark.parametrize(("stop_on_disconnect", "stops"), [("true", True), ("false", False)])
async def test_stop_transaction_on_ev_side_disconnect(
    bench: Bench, stop_on_disconnect: str, stops: bool
) -> None:
    session = bench.session
    status = await session.change_configuration(
        "StopTransactionOnEVSideDisconnect", stop_on_disconnect
    )
    assert status == "Accepted"
    tx = await bench.start_local(1)
    assert (await bench.ctl("unplug", 1))["ok"]
    if stops:
        stop = await session.wait_for("StopTransaction")
        assert stop["reason"] == "EVDisconnected"
        await bench.status(1, "Available")
        return
    # The transaction goes on without the EV; plugged in again, it charges again.
    await bench.status(1, "SuspendedEV")
    assert (await status_of(bench))["connectors"][0]["transaction_id"] == tx
    assert (await bench.ctl("plug", 1))["ok"]
    await bench.status(1, "Charging")
    assert (await bench.ctl("tag", 1, id_tag=TAG))["ok"]
    stop = await session.wait_for("StopTransaction")
    assert stop["reason"] == "Local" and stop["transactionId"] == tx


@pytest.mark.parametrize(("stop_on_invalid", "stops"), [("true", True), ("false", False)])
async def test_stop_transaction_on_invalid_id(
    bench: Bench, stop_on_invalid: str, stops: bool
) -> None:
    session = bench.session
    assert await session.change_configuration("OCPPAuthorizationEnabled", "false") == "Accepted"
    assert await session.change_configuration("StopTransactionOnInvalidId", stop_on_invalid) == (
        "Accepted"
    )
    assert (await bench.ctl("plug", 1))["ok"]
    assert (await bench.ctl("tag", 1, id_tag="UNKNOWN1"))["ok"]  # free vend: no Authorize
    start = await session.wait_for("StartTransaction")
    assert start["idTag"] == "UNKNOWN1"  # ... which the CSMS answers Invalid
    if stops:
        stop = await session.wait_for("StopTransaction")
        assert stop["reason"] == "DeAuthorized"
        await bench.status(1, "Finishing")
        return
    await bench.status(1, "SuspendedEVSE")
    shown = (await status_of(bench))["connectors"][0]
    assert shown["transaction_id"] is not None and shown["power_W"] == 0.0
    assert not any(m.action == "StopTransaction" for m in session.received)


async def test_clock_aligned_meter_values(bench: Bench) -> None:
    session = bench.session
    assert await session.change_configuration(
        "MeterValuesAlignedData", "Energy.Active.Import.Register,Power.Active.Import"
    ) == "Accepted"
    tx = await bench.start_local(1)
    assert await session.change_configuration("ClockAlignedDataInterval", "1") == "Accepted"

    def aligned(payload: dict[str, Any]) -> bool:
        values = payload["meterValue"][0]["sampledValue"]
        return values[0]["context"] == "Sample.Clock"

    during = await session.wait_for("MeterValues", lambda p: aligned(p) and p["connectorId"] == 1)
    idle = await session.wait_for("MeterValues", lambda p: aligned(p) and p["connectorId"] == 2)
    assert during["transactionId"] == tx and "transactionId" not in idle
    stamp = datetime.fromisoformat(during["meterValue"][0]["timestamp"].replace("Z", "+00:00"))
    assert stamp.microsecond < 200_000  # on a whole second, not just every second
    assert [v["measurand"] for v in idle["meterValue"][0]["sampledValue"]] == [
        "Energy.Active.Import.Register",
        "Power.Active.Import",
    ]


async def test_stop_transaction_carries_the_stop_txn_data(bench: Bench) -> None:
    session = bench.session
    assert await session.change_configuration(
        "StopTxnSampledData", "Energy.Active.Import.Register"
    ) == "Accepted"
    assert await session.change_configuration("StopTxnAlignedData", "Power.Active.Import") == (
        "Accepted"
    )
    assert await session.change_configuration("ClockAlignedDataInterval", "1") == "Accepted"
    tx = await bench.start_local(1)
    await session.wait_for(
        "MeterValues",
        lambda p: p["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Clock"
        and p["connectorId"] == 1,
    )
    assert (await bench.ctl("unplug", 1))["ok"]
    stop = await session.wait_for("StopTransaction")
    contexts = [mv["sampledValue"][0]["context"] for mv in stop["transactionData"]]
    assert contexts[0] == "Transaction.Begin" and contexts[-1] == "Transaction.End"
    assert "Sample.Clock" in contexts
    clock = next(mv for mv in stop["transactionData"]
                 if mv["sampledValue"][0]["context"] == "Sample.Clock")
    assert [v["measurand"] for v in clock["sampledValue"]] == ["Power.Active.Import"]
    begin = stop["transactionData"][0]["sampledValue"]
    assert begin == [{"value": str(bench.starts[1]["meterStart"]),  # whole Wh, as meterStart
                      "context": "Transaction.Begin",
                      "measurand": "Energy.Active.Import.Register",
                      "location": "Outlet", "unit": "Wh"}]
    assert bench.csms.ledger[tx].transaction_data == stop["transactionData"]


async def test_stop_txn_sampled_data_is_sampled_every_interval_with_its_own_measurands(
    bench: Bench,
) -> None:
    session = bench.session
    for key, value in [
        ("MeterValuesSampledData", "Power.Active.Import"),  # what MeterValues carry
        ("StopTxnSampledData", "Energy.Active.Import.Register,SoC"),  # what the stop carries
        ("MeterValuesAlignedData", ""),  # no clock-aligned MeterValues at all...
        ("StopTxnAlignedData", "Current.Import"),  # ...but clock-aligned values for the stop
        ("ClockAlignedDataInterval", "1"),
        ("MeterValueSampleInterval", "1"),
    ]:
        assert await session.change_configuration(key, value) == "Accepted", key
    tx = await bench.start_local(1)
    periodic = [await session.wait_for("MeterValues", lambda p: p["connectorId"] == 1)
                for _ in range(2)]  # fmt: skip
    for sample in periodic:
        assert [v["measurand"] for v in sample["meterValue"][0]["sampledValue"]] == [
            "Power.Active.Import"
        ]
    assert (await bench.ctl("unplug", 1))["ok"]
    stop = await session.wait_for("StopTransaction")
    data = stop["transactionData"]
    contexts = [mv["sampledValue"][0]["context"] for mv in data]
    assert contexts[0] == "Transaction.Begin" and contexts[-1] == "Transaction.End"
    assert contexts.count("Sample.Periodic") >= 2
    for mv in data:
        measurands = [v["measurand"] for v in mv["sampledValue"]]
        if mv["sampledValue"][0]["context"] == "Sample.Clock":
            assert measurands == ["Current.Import"]
        elif mv["sampledValue"][0]["context"] == "Sample.Periodic":
            assert measurands == ["Energy.Active.Import.Register", "SoC"]
    assert "Sample.Clock" in contexts
    stamps = [mv["timestamp"] for mv in data]
    assert stamps == sorted(stamps)  # kept in the order measured
    assert bench.csms.ledger[tx].transaction_data == data
    assert session.violations == []


async def test_minimum_status_duration_reports_only_statuses_that_held(bench: Bench) -> None:
    session = bench.session
    assert await session.change_configuration("MinimumStatusDuration", "1") == "Accepted"

    def statuses_of_1() -> list[str]:
        return [m.payload["status"] for m in session.received
                if m.action == "StatusNotification" and m.payload["connectorId"] == 1]  # fmt: skip

    before = statuses_of_1()
    assert before[-1] == "Available"
    # Plugged and unplugged within the second: Available held for the CSMS, nothing is sent,
    # though the connector itself (and its lights) went through Preparing at once.
    assert await bench.ctl("plug", 1) == {"ok": True, "result": {"status": "Preparing"}}
    assert (await bench.ctl("unplug", 1))["ok"]
    plugged_at = time.monotonic()
    assert (await bench.ctl("plug", 1))["ok"]  # this one stays
    held = await bench.status(1, "Preparing", timeout=5)
    assert time.monotonic() - plugged_at >= 1.0
    assert statuses_of_1() == [*before, "Preparing"]
    # Stamped with the moment the status began, not when the report left.
    stamp = parse_iso(held["timestamp"])
    sent = next(m.at for m in reversed(session.received) if m.action == "StatusNotification")
    assert sent - stamp.timestamp() >= 0.9


async def test_without_stop_txn_data_stop_transaction_has_none(bench: Bench) -> None:
    await bench.start_local(1)
    assert (await bench.ctl("unplug", 1))["ok"]
    stop = await bench.session.wait_for("StopTransaction")
    assert "transactionData" not in stop
