"""The pieces of OCPP 2.0.1 Reset OnIdle and SecurityEventNotification that the wire tests
(test_ocpp201_core.py) cannot reach: a reset waiting for a transaction to end (the 2.0.1
transactions arrive with their own layer, so a 1.6 bench runs the transaction here), the clock
being set by the CSMS's time, a new SecurityProfile, and events that happen while offline.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from hilsim.clock import Clock, utc_iso
from hilsim.ocpp201.security_events import (
    RESET,
    SECURITY_PARAMETERS,
    SETTING_TIME,
    STARTUP,
    SecurityEvents,
)

from conftest import Bench


async def test_a_reset_on_idle_waits_for_the_transaction_to_end(bench: Bench) -> None:
    charger = bench.service.charger
    assert charger is not None
    await bench.start_local(1)
    reported = asyncio.Event()

    async def before() -> None:
        reported.set()

    status, release = charger.availability.reset_when_idle("Hard", before=before)
    assert status == "Scheduled"
    release()
    assert charger.availability.snapshot()["reset"] == "Hard"
    assert not reported.is_set() and not bench.task.done()
    assert (await bench.ctl("unplug", 1))["ok"]
    stop = await bench.session.wait_for("StopTransaction")
    assert stop["reason"] == "EVDisconnected"
    await asyncio.wait_for(reported.wait(), 5)
    await asyncio.wait_for(bench.task, 10)
    assert bench.service.restart_requested


async def test_a_reset_on_idle_without_a_transaction_is_at_once(bench: Bench) -> None:
    charger = bench.service.charger
    assert charger is not None
    status, release = charger.availability.reset_when_idle("Hard")
    assert status == "Accepted"
    release()
    await asyncio.wait_for(bench.task, 10)
    assert bench.service.restart_requested


def test_the_clock_tells_when_the_csms_sets_it() -> None:
    system = datetime(2030, 1, 1, tzinfo=UTC)
    synced: list[bool | None] = [False]
    clock = Clock(synchronized=lambda: synced[0], system_now=lambda: system)
    steps: list[float] = []
    clock.step_listeners.append(steps.append)
    clock.learn(utc_iso(system + timedelta(hours=1)))
    clock.learn(utc_iso(system + timedelta(hours=1, seconds=1)))
    assert steps == [3600.0, 1.0]
    synced[0] = True  # a synchronised clock is never set by the CSMS
    clock.learn(utc_iso(system))
    assert steps == [3600.0, 1.0]


class FakeKeys:
    def __init__(self) -> None:
        self.listeners: list[Any] = []

    def subscribe(self, listener: Any) -> Any:
        self.listeners.append(listener)
        return lambda: None

    def change(self, name: str, value: Any) -> None:
        spec = type("Spec", (), {"name": name})()
        for listener in self.listeners:
            listener(spec, value)


class FakeSender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str | None, str]] = []

    async def security_event(
        self, kind: str, tech_info: str | None = None, timestamp: str | None = None
    ) -> None:
        self.sent.append((kind, tech_info, timestamp or ""))

    def send_security_events(self, events: list[tuple[str, str | None, str]]) -> None:
        self.sent += events


def _attached() -> tuple[SecurityEvents, FakeKeys, Clock]:
    events = SecurityEvents()
    keys = FakeKeys()
    clock = Clock(synchronized=lambda: False)
    events.attach(keys, clock)
    events.attach(keys, clock)  # a second client attaches nothing more
    assert len(keys.listeners) == 1 and len(clock.step_listeners) == 1
    return events, keys, clock


def test_startup_once_per_process_then_what_happened_offline() -> None:
    events, keys, clock = _attached()
    first = FakeSender()
    assert [e[0] for e in events.connected(first)] == [STARTUP]
    events.disconnected(first)
    keys.change("SecurityProfile", 1)  # takes effect by connecting again: sent after the boot
    keys.change("HeartbeatInterval", 60)  # not a security parameter
    clock.learn(utc_iso(datetime.now(UTC) + timedelta(minutes=5)))
    assert first.sent == []
    second = FakeSender()
    kinds = [e[0] for e in events.connected(second)]
    assert kinds == [SECURITY_PARAMETERS, SETTING_TIME]  # no second StartupOfTheDevice
    clock.learn(utc_iso(datetime.now(UTC) + timedelta(minutes=5, seconds=0.5)))  # drift: none
    events.report(RESET, "Reset Immediate")
    assert [e[0] for e in second.sent] == [RESET]


async def test_report_and_wait_sends_through_the_connected_client() -> None:
    events, _keys, _clock = _attached()
    sender = FakeSender()
    events.connected(sender)
    await events.report_and_wait(RESET, "Reset OnIdle")
    assert [e[0] for e in sender.sent] == [RESET]
    events.disconnected(sender)
    await events.report_and_wait(RESET, "again")  # offline: kept for the next connection
    assert [e[0] for e in events.pending] == [RESET]
