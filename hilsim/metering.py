"""Metering, in one place: periodic samples, clock-aligned data, triggered MeterValues, and the
Transaction.Begin/End values of StopTxnSampledData.

What a MeterValue holds is built by one function (`meter_value`) from one measurand block
(`measurands`), whatever asked for it: the sampling loop (MeterValuesSampledData and, from the
same sample, StopTxnSampledData), the clock (MeterValuesAlignedData, StopTxnAlignedData), a
TriggerMessage, or a transaction's begin and end. Samples taken during a transaction are
transaction messages: the outbox keeps them (and the StopTransaction's transactionData) in the
database as they are measured, so that a transaction a power cut ended still reports them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from hilsim.clock import Clock
from hilsim.connectors import ConnectorRuntime, Dispatch
from hilsim.evse import TRANSACTION_STATUSES, Status, events
from hilsim.keys import ConfigurationKeys, KeySpec
from hilsim.measurands import choose, wanted
from hilsim.meter import MeterReading, register_Wh
from hilsim.ocpp.ports import TriggerSender
from hilsim.ocpp.session import CsmsLink, LinkState
from hilsim.tasks import TaskSet

log = logging.getLogger(__name__)


class SampleSink(Protocol):
    """Where transaction meter values are kept until delivered (`hilsim.outbox.Outbox`)."""

    async def sample(
        self,
        connector_id: int,
        energy_Wh: float,
        stamp: str,
        local_id: int,
        meter_value: list[dict[str, Any]] | None,
        kept: dict[str, Any] | None = None,
    ) -> None: ...

    async def keep(self, local_id: int, meter_value: dict[str, Any]) -> None: ...

    def transaction_id(self, local_id: int) -> int | None:
        """The CSMS's id of a transaction, once the CSMS gave one."""
        ...


class Metering:
    """Owns every connector's sampling loop and the clock-aligned loop."""

    def __init__(
        self,
        connectors: Mapping[int, ConnectorRuntime],
        keys: ConfigurationKeys,
        link: CsmsLink,
        sink: SampleSink,
        *,
        clock: Callable[[], float],
        wall: Clock,
        dispatch: Dispatch,
        tasks: TaskSet,
    ) -> None:
        """``tasks``: where the writes of samples run (what a stop waits for)."""
        self.connectors = connectors
        self.keys = keys
        self.link = link
        self.sink = sink
        self.clock = clock
        self.wall = wall
        self.dispatch = dispatch
        self._writes = tasks
        self._loops = TaskSet("metering")  # they never end: not what a stop waits for
        self._sample_wake = asyncio.Event()
        self._aligned_changed = asyncio.Event()
        #: whether clock-aligned values are sent while a transaction runs (1.6: always; 2.0.1:
        #: unless AlignedDataCtrlr.SendDuringIdle). StopTxnAlignedData is kept either way.
        self.aligned_during_transactions: Callable[[], bool] = lambda: True
        keys.subscribe(self._key_changed)

    def start(self) -> None:
        self._loops.spawn(self._clock_aligned_data(), "clock-aligned-data")

    async def close(self) -> None:
        for rt in self.connectors.values():
            rt.metering = None
        await self._loops.cancel_all()

    def _key_changed(self, spec: KeySpec, value: Any) -> None:
        if spec.name == "MeterValueSampleInterval":
            self._sample_wake.set()
        elif spec.name == "ClockAlignedDataInterval":
            self._aligned_changed.set()

    # -- one MeterValue ------------------------------------------------------------------------

    def meter_value(
        self,
        connector_id: int,
        context: str,
        key: str = "MeterValuesSampledData",
        listed: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """One MeterValue of a connector now, with the measurands ``key`` names (or, given,
        those ``listed``: a 2.0.1 list that has no 1.6 key, like TxStartedMeasurands)."""
        rt = self.connectors[connector_id]
        reading = rt.meter.read(self.clock())
        sampled = measurands(reading)
        if rt.machine.state.transaction is not None:
            soc = rt.vehicle.soc(reading.energy_Wh)
            sampled.append(sampled_value(soc, "SoC", "Percent", "EV", digits=2))
        chosen = choose(
            sampled,
            wanted(self.keys, key) if listed is None else listed,
            offered_W=rt.offered_power_W(),
            voltage_V=rt.voltage_V,
            phases=rt.phases,
            context=context,
        )
        return {"timestamp": self.wall.iso(), "sampledValue": chosen}

    async def triggered(self, sender: TriggerSender, connector_ids: list[int]) -> None:
        """TriggerMessage MeterValues: one Trigger value of each connector, sent at once."""
        for cid in connector_ids:
            meter_value = self.meter_value(cid, "Trigger")
            local_id = self.connectors[cid].machine.state.local_id
            transaction_id = None if local_id is None else self.sink.transaction_id(local_id)
            await sender.meter_values(cid, transaction_id, [meter_value])

    # -- periodic samples (MeterValueSampleInterval, MeterValuesSampledData) -------------------

    def connector_changed(self, rt: ConnectorRuntime) -> None:
        """One sampling loop per connector while it has a transaction."""
        wanted = rt.machine.status in TRANSACTION_STATUSES
        running = rt.metering is not None and not rt.metering.done()
        if wanted and not running:
            rt.metering = self._loops.spawn(self._sampling_loop(rt), f"metering-C{rt.id}")
        elif not wanted and running:
            assert rt.metering is not None
            rt.metering.cancel()
            rt.metering = None

    async def _sampling_loop(self, rt: ConnectorRuntime) -> None:
        """Sample every MeterValueSampleInterval; a changed interval applies from the next wait."""
        last = self.clock()
        while True:
            interval = float(self.keys.get("MeterValueSampleInterval"))
            remaining = last + interval - self.clock() if interval > 0 else None
            if remaining is None or remaining > 0:
                self._sample_wake.clear()
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._sample_wake.wait()
                continue
            last = self.clock()
            self._sample(rt)

    def _sample(self, rt: ConnectorRuntime) -> None:
        local_id = rt.machine.state.local_id
        if local_id is None:
            return
        if not rt.meter.health.ok:
            # Its last reading is stale; the meter's register keeps counting, so the next good
            # sample (or meterStop) carries the energy of the gap: nothing is lost by skipping.
            log.debug("C%d sample skipped: meter %s", rt.id, rt.meter.health.describe())
            return
        reading = rt.meter.read(self.clock())
        soc = rt.vehicle.soc(reading.energy_Wh)
        rt.last_sample = {
            "energy_Wh": reading.energy_Wh,
            "power_W": reading.power_W or 0.0,
            "soc": soc,
        }
        stamp = self.wall.iso()
        measured = [*measurands(reading), sampled_value(soc, "SoC", "Percent", "EV", digits=2)]
        offered_W = rt.offered_power_W()
        # Only the measurands the CSMS asked for (MeterValuesSampledData); none: no MeterValues.
        voltage_V, phases = rt.voltage_V, rt.phases
        sampled = choose(
            measured, wanted(self.keys), offered_W=offered_W, voltage_V=voltage_V, phases=phases
        )
        meter_value = [{"timestamp": stamp, "sampledValue": sampled}] if sampled else None
        # StopTxnSampledData: the same sample, its own measurands, for the StopTransaction.
        kept = None
        stop_wanted = wanted(self.keys, "StopTxnSampledData")
        if stop_wanted:
            chosen = choose(
                measured, stop_wanted, offered_W=offered_W, voltage_V=voltage_V, phases=phases
            )
            kept = {"timestamp": stamp, "sampledValue": chosen} if chosen else None
        # Persisted (and queued) in sample order; sent when the link allows.
        self._writes.spawn(
            self.sink.sample(rt.id, reading.energy_Wh, stamp, local_id, meter_value, kept),
            f"sample-C{rt.id}",
        )
        if soc >= 100.0 and rt.machine.status == Status.CHARGING:
            log.info("C%d EV battery full", rt.id)
            self.dispatch(rt.id, events.EvSuspend())

    # -- clock-aligned meter data (ClockAlignedDataInterval, MeterValuesAlignedData) -----------

    async def _clock_aligned_data(self) -> None:
        """MeterValues (Sample.Clock) at every multiple of ClockAlignedDataInterval after
        midnight UTC, from every connector, with the measurands of MeterValuesAlignedData.

        During a transaction they are transaction messages (the outbox keeps them, with the
        transactionId); outside one they are sent when connected, and not kept otherwise.
        """
        while True:
            interval = int(self.keys.get("ClockAlignedDataInterval"))
            self._aligned_changed.clear()
            if interval <= 0:
                await self._aligned_changed.wait()
                continue
            now = self.wall.now()
            since_midnight = now - now.replace(hour=0, minute=0, second=0, microsecond=0)
            elapsed = since_midnight.total_seconds()
            delay = (elapsed // interval + 1) * interval - elapsed
            try:
                async with asyncio.timeout(delay):  # not wait_for: see _sampling_loop
                    await self._aligned_changed.wait()
            except TimeoutError:
                self._send_clock_aligned()

    def _send_clock_aligned(self) -> None:
        idle_only = not self.aligned_during_transactions() and any(
            rt.machine.state.local_id is not None for rt in self.connectors.values()
        )
        for cid, rt in self.connectors.items():
            meter_value = self.meter_value(cid, "Sample.Clock", "MeterValuesAlignedData")
            sampled = [meter_value] if meter_value["sampledValue"] and not idle_only else None
            local_id = rt.machine.state.local_id
            if local_id is not None:
                # StopTxnAlignedData is its own list: wanted even when no MeterValues are.
                kept = self.meter_value(cid, "Sample.Clock", "StopTxnAlignedData")
                if sampled is None and not kept["sampledValue"]:
                    continue
                energy = rt.meter.read(self.clock()).energy_Wh
                stamp = meter_value["timestamp"]
                self._writes.spawn(
                    self.sink.sample(
                        cid, energy, stamp, local_id, sampled,
                        kept=kept if kept["sampledValue"] else None,
                    ),
                    f"clock-aligned-sample-C{cid}",
                )  # fmt: skip
            elif sampled is not None and self.link.state == LinkState.CONNECTED:
                self.link.submit(
                    lambda c, cid=cid, mv=sampled: c.meter_values(cid, None, mv),
                    f"MeterValues C{cid} (clock-aligned)",
                    quiet=True,
                )

    # -- StopTransaction's transactionData (StopTxnSampledData, StopTxnAlignedData) ------------

    def transaction_began(self, connector_id: int, local_id: int) -> None:
        """Keep the Transaction.Begin values of StopTxnSampledData, when any are wanted."""
        begin = self.meter_value(connector_id, "Transaction.Begin", "StopTxnSampledData")
        if begin["sampledValue"]:
            self._writes.spawn(
                self.sink.keep(local_id, begin), f"transaction-begin-C{connector_id}"
            )

    def transaction_end(self, connector_id: int) -> dict[str, Any] | None:
        """The Transaction.End values of StopTxnSampledData, or None when none are wanted."""
        end = self.meter_value(connector_id, "Transaction.End", "StopTxnSampledData")
        return end if end["sampledValue"] else None


def sampled_value(
    value: float,
    measurand: str,
    unit: str | None,
    location: str,
    digits: int = 1,
    phase: str | None = None,
) -> dict[str, str]:
    """One SampledValue (Sample.Periodic; `choose` sets another context where one applies)."""
    sampled = {
        "value": f"{value:.{digits}f}",
        "context": "Sample.Periodic",
        "measurand": measurand,
        "location": location,
    }
    if phase is not None:
        sampled["phase"] = phase
    if unit is not None:  # OCPP 1.6 has no unit for Frequency: it is Hertz by definition
        sampled["unit"] = unit
    return sampled


def measurands(reading: MeterReading) -> list[dict[str, str]]:
    """Totals first (what most CSMSs read), then each phase; units from the official enum.

    A synthetic reading adds only power and current: its voltage is configured, not measured.
    """
    totals: list[tuple[float | None, str, str | None, int]] = [
        (reading.power_W, "Power.Active.Import", "W", 1),
        (reading.current_A, "Current.Import", "A", 2),
    ]
    if reading.measured:
        totals += [
            (reading.voltage_V, "Voltage", "V", 1),
            (reading.frequency_Hz, "Frequency", None, 2),
        ]
    energy = float(register_Wh(reading.energy_Wh))  # whole Wh, like meterStart/meterStop
    sampled = [sampled_value(energy, "Energy.Active.Import.Register", "Wh", "Outlet", 0)]
    sampled += [sampled_value(v, m, u, "Outlet", d) for v, m, u, d in totals if v is not None]
    for p in reading.phases:
        per_phase: list[tuple[float | None, str, str, int, str]] = [
            (
                None if p.energy_Wh is None else float(register_Wh(p.energy_Wh)),
                "Energy.Active.Import.Register",
                "Wh",
                0,
                p.phase,
            ),
            (p.power_W, "Power.Active.Import", "W", 1, p.phase),
            (p.current_A, "Current.Import", "A", 2, p.phase),
            (p.voltage_V, "Voltage", "V", 1, f"{p.phase}-N"),  # measured line to neutral
        ]
        sampled += [
            sampled_value(v, m, u, "Outlet", d, ph) for v, m, u, d, ph in per_phase if v is not None
        ]
    return sampled
