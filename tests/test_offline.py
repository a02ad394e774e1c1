"""Nothing lost: offline starts, power loss, refused messages, dead links, a wrong clock."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from netproxy import Proxy
from test_reconnect import free_port

from hilsim.clock import BUILD_DATE, Clock, parse_iso
from hilsim.config import Settings
from hilsim.control import request
from hilsim.csms import CentralSystem
from hilsim.evse import events
from hilsim.service import Service
from hilsim.store import Store
from hilsim.stored_keys import load_configuration

from conftest import CP_ID, TAG, make_settings, start_service, stop_service


async def preset_keys(settings: Settings, **values: str) -> None:
    """Set OCPP keys in the database before the charge point starts, as `hilsim config set`."""
    async with await Store.open(settings.storage.database) as store:
        keys = await load_configuration(store)
        for name, text in values.items():
            status, spec, value = keys.change(name, text)
            assert spec is not None and value is not None, (name, status)
            await store.save_key(spec.name, spec.format(value))


def recorded(service: Service, action: str, count: int) -> asyncio.Future[None]:
    """Resolves once ``count`` messages of ``action`` are safely in the outbox."""
    outbox = service.charger.outbox
    assert outbox is not None
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    seen = 0

    def listener(name: str) -> None:
        nonlocal seen
        if name == action:
            seen += 1
            if seen >= count and not done.done():
                done.set_result(None)

    outbox.recorded_listeners.append(listener)
    return done


def next_event(service: Service, kind: type) -> asyncio.Future[Any]:
    charger = service.charger
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def listener(cid: int, event: Any, outcome: Any) -> None:
        if isinstance(event, kind) and not future.done():
            future.set_result(outcome)

    charger.event_listeners.append(listener)
    return future


async def ctl(settings: Settings, cmd: str, connector: int, **extra: Any) -> None:
    answer = await request(settings.control.socket, {"cmd": cmd, "connector": connector, **extra})
    assert answer["ok"], answer


def energies(record: Any) -> list[float]:
    return [float(value) for _, value in record.samples()]


async def test_transaction_started_offline_reaches_the_csms_exactly_once(short_dir: Path) -> None:
    port = free_port()
    settings = make_settings(short_dir, f"ws://127.0.0.1:{port}")
    await preset_keys(settings, AllowOfflineTxForUnknownId="true", MeterValueSampleInterval="1")
    service, task = await start_service(settings)
    try:
        started = next_event(service, events.TransactionStarted)
        samples = recorded(service, "MeterValues", 2)
        await ctl(settings, "plug", 1)
        await ctl(settings, "tag", 1, id_tag=TAG)
        outcome = await asyncio.wait_for(started, 5)
        assert outcome.state.status == "Charging"  # charging while the CSMS is unreachable
        await asyncio.wait_for(samples, 5)
        stopped = recorded(service, "StopTransaction", 1)
        await ctl(settings, "unplug", 1)
        await asyncio.wait_for(stopped, 5)
        async with CentralSystem("127.0.0.1", port) as csms:
            session = await csms.wait_for_charge_point(CP_ID, timeout=10)
            stop = await session.wait_for("StopTransaction", timeout=10)
            (record,) = csms.ledger.values()
            assert stop["transactionId"] == record.transaction_id
            assert stop["reason"] == "EVDisconnected"
            assert record.id_tag == TAG and record.meter_stop == stop["meterStop"]
            values = energies(record)
            assert len(values) >= 2 and values == sorted(values)
            assert record.meter_start <= values[0] and values[-1] <= record.meter_stop + 0.5
            # In order: Start, then every sample, then Stop; nothing twice.
            actions = [m.action for m in session.received if m.action.endswith("Transaction")
                       or m.action == "MeterValues"]
            assert actions[0] == "StartTransaction" and actions[-1] == "StopTransaction"
            assert actions.count("StartTransaction") == 1
            assert actions.count("StopTransaction") == 1
            assert session.violations == []
            await asyncio.wait_for(service.charger.outbox.drained(), 5)
            status = await request(settings.control.socket, {"cmd": "status"})
            assert status["result"]["outbox"] == {
                "delivered": len(actions), "dropped": 0, "set_aside": 0
            }
    finally:
        await stop_service(service, task)


async def test_offline_start_refused_without_cache_or_permission(short_dir: Path) -> None:
    settings = make_settings(short_dir, f"ws://127.0.0.1:{free_port()}")
    service, task = await start_service(settings)
    try:
        result = next_event(service, events.AuthorizeResult)
        await ctl(settings, "plug", 1)
        await ctl(settings, "tag", 1, id_tag=TAG)
        outcome = await asyncio.wait_for(result, 5)
        assert outcome.state.status == "Preparing" and outcome.state.transaction is None
    finally:
        await stop_service(service, task)


async def test_cached_tag_starts_offline(short_dir: Path) -> None:
    port = free_port()
    settings = make_settings(short_dir, f"ws://127.0.0.1:{port}")
    async with CentralSystem("127.0.0.1", port) as csms:
        service, task = await start_service(settings)
        session = await csms.wait_for_charge_point(CP_ID, timeout=5)
        await ctl(settings, "plug", 1)
        await ctl(settings, "tag", 1, id_tag=TAG)  # Accepted by the CSMS: now in the cache
        await session.wait_for("StatusNotification", lambda p: p["status"] == "Charging")
        await ctl(settings, "tag", 1, id_tag=TAG)
        await session.wait_for("StopTransaction")
        await ctl(settings, "unplug", 1)
        await session.wait_for("StatusNotification", lambda p: p["status"] == "Available")
    try:
        started = next_event(service, events.TransactionStarted)
        await ctl(settings, "plug", 2)
        await ctl(settings, "tag", 2, id_tag=TAG)  # CSMS gone: the cache decides
        outcome = await asyncio.wait_for(started, 5)
        assert outcome.state.status == "Charging"
    finally:
        await stop_service(service, task)


async def test_local_pre_authorize_skips_authorize(bench_factory) -> None:
    bench = await bench_factory()
    await bench.start_local(1)  # Authorize once: cached
    await bench.ctl("tag", 1, id_tag=TAG)
    await bench.ctl("unplug", 1)
    await bench.session.change_configuration("LocalPreAuthorize", "true")
    await bench.start_local(2)
    authorizes = [m for m in bench.session.received if m.action == "Authorize"]
    assert len(authorizes) == 1


async def test_refused_stop_is_retried_then_delivered(bench_factory) -> None:
    bench = await bench_factory()
    await bench.session.change_configuration("TransactionMessageRetryInterval", "0")
    bench.csms.refuse_next["StopTransaction"] = 2
    tx = await bench.start_local(1)
    await bench.ctl("unplug", 1)
    for _ in range(3):  # two refused, the third confirmed
        stop = await bench.session.wait_for("StopTransaction", timeout=10)
    assert stop["transactionId"] == tx
    assert bench.csms.ledger[tx].reason == "EVDisconnected"
    stops = [m for m in bench.session.received if m.action == "StopTransaction"]
    assert len(stops) == 3


async def test_refused_message_is_given_up_after_the_attempts(bench_factory) -> None:
    bench = await bench_factory()
    await bench.session.change_configuration("TransactionMessageRetryInterval", "0")
    await bench.session.change_configuration("TransactionMessageAttempts", "2")
    bench.csms.refuse_next["StopTransaction"] = 5
    await bench.start_local(1)
    await bench.ctl("unplug", 1)
    await bench.session.wait_for("StopTransaction", timeout=10)
    await bench.session.wait_for("StopTransaction", timeout=10)
    outbox = bench.service.charger.outbox
    assert outbox is not None
    await asyncio.wait_for(outbox.drained(), 5)
    assert outbox.dropped == 1
    assert bench.csms.refuse_next["StopTransaction"] == 3


async def test_dead_link_is_noticed_by_ping_and_reconnected(csms, short_dir: Path) -> None:
    async with Proxy(csms.port) as proxy:
        settings = make_settings(short_dir, f"ws://127.0.0.1:{proxy.port}")
        await preset_keys(settings, WebSocketPingInterval="1")
        service, task = await start_service(settings)
        try:
            first = await csms.wait_for_charge_point(CP_ID, timeout=5)
            await first.wait_for("StatusNotification", lambda p: p["connectorId"] == 2)
            proxy.blackhole()  # Wi-Fi gone: no FIN, no RST, just silence
            # 1 s without a pong, then at most 5 s for the closing handshake, then reconnect.
            second = await csms.wait_for_charge_point(CP_ID, timeout=15)
            assert second is not first
            await second.wait_for("BootNotification")
            assert service.link is not None and service.link.connections == 2
        finally:
            await stop_service(service, task)


async def test_refused_handshake_is_retried(csms, short_dir: Path) -> None:
    async with Proxy(csms.port) as proxy:
        proxy.refuse_next = 2
        settings = make_settings(short_dir, f"ws://127.0.0.1:{proxy.port}")
        service, task = await start_service(settings)
        try:
            session = await csms.wait_for_charge_point(CP_ID, timeout=10)
            await session.wait_for("BootNotification")
            assert proxy.connections == 3
        finally:
            await stop_service(service, task)


async def test_csms_closing_with_an_error_code_is_reconnected(bench_factory) -> None:
    bench = await bench_factory()
    await bench.session.wait_for("StatusNotification", lambda p: p["connectorId"] == 2)
    await bench.session._connection.websocket.close(1011, "central system restarting")
    again = await bench.csms.wait_for_charge_point(CP_ID, timeout=10)
    await again.wait_for("BootNotification")


@pytest.mark.parametrize("refusal", ["Pending", "Rejected"])
async def test_boot_refusal_sends_nothing_else_until_accepted(
    bench_factory, csms, refusal: str
) -> None:
    csms.boot_status = refusal
    csms.heartbeat_interval = 1
    bench = await bench_factory()
    await bench.session.wait_for("BootNotification")
    await bench.session.wait_for("BootNotification", timeout=5)
    csms.boot_status = "Accepted"
    await bench.status(1, "Available", timeout=5)
    actions = [m.action for m in bench.session.received]
    first_other = next(i for i, a in enumerate(actions) if a != "BootNotification")
    assert first_other >= 3  # two refused boots, then the accepted one


# -- power loss: a real process, killed ---------------------------------------------------


async def run_hilsim(config: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hilsim", "--log-level", "WARNING", "run", "--config", config,
        stdin=asyncio.subprocess.DEVNULL,
    )


async def charge_then_pull_the_plug(
    csms: CentralSystem, settings: Settings
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A real `hilsim run` starts charging on connector 1, samples twice, and is SIGKILLed.

    Returns the StartTransaction and the two MeterValues the CSMS received before the cut.
    """
    proc = await run_hilsim(settings.source)
    try:
        session = await csms.wait_for_charge_point(CP_ID, timeout=15)
        await session.wait_for("StatusNotification", lambda p: p["connectorId"] == 2)
        await ctl(settings, "plug", 1)
        await ctl(settings, "tag", 1, id_tag=TAG)
        start = await session.wait_for("StartTransaction")
        samples = [await session.wait_for("MeterValues", timeout=5) for _ in range(2)]
        os.kill(proc.pid, signal.SIGKILL)  # the plug pulled
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return start, samples


async def test_power_loss_ends_the_open_transaction_with_reason_power_loss(
    csms, short_dir: Path
) -> None:
    settings = make_settings(short_dir, csms.url)
    await preset_keys(settings, MeterValueSampleInterval="1")
    start, samples = await charge_then_pull_the_plug(csms, settings)
    last = max(
        float(v["value"])
        for s in samples
        for v in s["meterValue"][0]["sampledValue"]
        if v["measurand"] == "Energy.Active.Import.Register"
    )
    proc = await run_hilsim(settings.source)
    try:
        session = await csms.wait_for_charge_point(CP_ID, timeout=15)
        stop = await session.wait_for("StopTransaction", timeout=10)
        assert stop["reason"] == "PowerLoss"
        assert stop["meterStop"] >= round(last) >= start["meterStart"]
        # The register carries on from where it was: a new transaction never starts lower.
        await session.wait_for("StatusNotification", lambda p: p["connectorId"] == 2)
        await ctl(settings, "plug", 2)
        await ctl(settings, "tag", 2, id_tag=TAG)
        await session.wait_for("StartTransaction")
        status = await request(settings.control.socket, {"cmd": "status"})
        assert status["result"]["connectors"][0]["energy_Wh"] >= stop["meterStop"] - 0.5
        assert session.violations == []
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)


async def test_power_loss_stop_still_carries_the_stop_txn_data_sampled_before(
    csms, short_dir: Path
) -> None:
    settings = make_settings(short_dir, csms.url)
    await preset_keys(
        settings, MeterValueSampleInterval="1", StopTxnSampledData="Energy.Active.Import.Register"
    )
    # A sample's kept value commits with its MeterValues: the two seen are on disk.
    start, samples = await charge_then_pull_the_plug(csms, settings)
    proc = await run_hilsim(settings.source)
    try:
        session = await csms.wait_for_charge_point(CP_ID, timeout=15)
        stop = await session.wait_for("StopTransaction", timeout=10)
        assert stop["reason"] == "PowerLoss"
        data = stop["transactionData"]
        contexts = [mv["sampledValue"][0]["context"] for mv in data]
        assert contexts[0] == "Transaction.Begin"
        assert data[0]["sampledValue"][0]["value"] == str(start["meterStart"])
        assert "Transaction.End" not in contexts  # nothing could be measured at the cut
        kept = {mv["timestamp"]: mv["sampledValue"][0]["value"] for mv in data[1:]}
        for sample in samples:
            value = next(v["value"] for v in sample["meterValue"][0]["sampledValue"]
                         if v["measurand"] == "Energy.Active.Import.Register")  # fmt: skip
            assert kept[sample["meterValue"][0]["timestamp"]] == value
        assert session.violations == []
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)


# -- the clock ----------------------------------------------------------------------------


def fixed(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def test_unsynchronised_clock_follows_the_csms_and_never_goes_back() -> None:
    system = [datetime(1970, 1, 1, tzinfo=UTC)]
    clock = Clock(synchronized=lambda: False, system_now=lambda: system[0])
    assert clock.now() == BUILD_DATE  # never before the build
    assert "NOT synchronised" in clock.source
    csms_time = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    clock.learn(csms_time.isoformat())
    assert clock.now() == csms_time
    assert "CSMS time" in clock.source
    system[0] += timedelta(seconds=10)
    assert clock.now() == csms_time + timedelta(seconds=10)
    clock.learn((csms_time + timedelta(seconds=8)).isoformat())  # an answer 2 s late on the wire
    assert clock.now() == csms_time + timedelta(seconds=10)  # clamped, not backwards
    system[0] += timedelta(seconds=10)
    assert clock.now() == csms_time + timedelta(seconds=18)  # and caught up again
    clock.learn("not a time")
    assert parse_iso(clock.iso()) >= csms_time


def test_a_csms_correcting_its_clock_backwards_steps_the_stamps_back_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A day ahead at boot, the true time at the next Heartbeat: stamps follow, not freeze."""
    system = [datetime(1970, 1, 1, tzinfo=UTC)]
    clock = Clock(synchronized=lambda: False, system_now=lambda: system[0])
    true_time = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    clock.learn((true_time + timedelta(days=1)).isoformat())
    assert clock.now() == true_time + timedelta(days=1)
    with caplog.at_level(logging.WARNING, logger="hilsim.clock"):
        clock.learn(true_time.isoformat())
    assert "86400.0 s behind" in caplog.text and "step back" in caplog.text
    assert clock.now() == true_time
    system[0] += timedelta(seconds=1)
    assert clock.now() == true_time + timedelta(seconds=1)  # and forwards from there


@pytest.mark.parametrize(
    "absurd", ["9999-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "2019-06-01T00:00:00Z", "0001-01-01"]
)
def test_a_time_outside_the_sane_window_is_ignored(
    absurd: str, caplog: pytest.LogCaptureFixture
) -> None:
    system = [datetime(1970, 1, 1, tzinfo=UTC)]
    clock = Clock(synchronized=lambda: False, system_now=lambda: system[0])
    true_time = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    clock.learn(true_time.isoformat())
    with caplog.at_level(logging.WARNING, logger="hilsim.clock"):
        clock.learn(absurd)
    assert f"currentTime {absurd}, outside 2026..2099" in caplog.text
    system[0] += timedelta(days=365 * 80)  # still a stamp, however long it runs
    assert clock.now() == true_time + timedelta(days=365 * 80)


def test_synchronised_clock_is_the_system_clock() -> None:
    now = datetime(2027, 1, 1, tzinfo=UTC)
    clock = Clock(synchronized=lambda: True, system_now=fixed(now))
    clock.learn((now + timedelta(hours=5)).isoformat())
    assert clock.now() == now and clock.source == "system clock (synchronised)"


async def test_status_says_which_clock_is_in_use(bench) -> None:
    status = await bench.ctl("status")
    assert "clock" in status["result"]["clock"] or "CSMS" in status["result"]["clock"]
    assert json.dumps(status)
