"""The Modbus meter source against pymodbus's own RTU server, over a pseudo-terminal pair, 9600 8N1.

The server end is `MeterSimulator` (the non-deprecated `SimDevice` API, live values through its
`action` callback) on one end of a `VirtualCable` (two ptys from `os.openpty()`, bridged); the
meter source opens the other end exactly as it would open a USB-RS485 adapter. Every wait is on an
event, a health change or a request count, with a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hilsim.meter import MeterHealth, MeterState, Problem
from hilsim.meter.config import MeterSettings
from hilsim.meter.modbus import ModbusLink, ModbusMeter
from hilsim.meter.registers import SDM120, SDM630, RegisterMap
from hilsim.meter.simulator import MeterSimulator, VirtualCable


@pytest.fixture
async def sim(cable: VirtualCable) -> AsyncIterator[MeterSimulator]:
    simulator = MeterSimulator(cable.meter_port, SDM630, baudrate=9600)
    simulator.set_energy(12_500.0)
    simulator.load(7_360.0)
    async with simulator:
        yield simulator


def settings(cable: VirtualCable, register_map: RegisterMap = SDM630, **kw: float) -> MeterSettings:
    values = {"poll_interval_s": 0.05, "timeout_s": 0.5, "fault_after_s": 1.0, "retry_max_s": 0.25}
    values.update(kw)
    return MeterSettings(
        kind=register_map.name,
        port=cable.charger_port,
        register_map=register_map,
        unit_id=int(values.pop("unit_id", 1)),
        **values,
    )


class Watch:
    """Health changes of a meter, in order, awaitable one after another."""

    def __init__(self, meter: ModbusMeter) -> None:
        self.seen: list[MeterHealth] = []
        self._cursor = 0
        self._changed = asyncio.Event()
        meter.health_listeners.append(self._heard)

    def _heard(self, health: MeterHealth) -> None:
        self.seen.append(health)
        self._changed.set()

    async def until(self, state: MeterState, timeout: float = 5.0) -> MeterHealth:
        """The next change to `state` after the one the previous call returned."""
        async with asyncio.timeout(timeout):
            while True:
                for i in range(self._cursor, len(self.seen)):
                    if self.seen[i].state == state:
                        self._cursor = i + 1
                        return self.seen[i]
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def meter(cable: VirtualCable, sim: MeterSimulator) -> AsyncIterator[ModbusMeter]:
    ms = settings(cable)
    m = ModbusMeter(ms, ModbusLink(ms), name="C1 meter")
    yield m
    await m.close()


async def test_first_reading_is_there_when_start_returns(meter: ModbusMeter) -> None:
    await meter.start()
    assert meter.health.state == MeterState.OK
    reading = meter.read(0.0)
    assert reading.measured and reading.taken_at is not None
    assert reading.energy_Wh == pytest.approx(12_500.0, abs=1.0)
    assert reading.power_W == pytest.approx(7_360.0)
    assert reading.current_A == pytest.approx(7_360.0 / 3 / 230.0, rel=1e-5)
    assert reading.voltage_V == 230.0 and reading.frequency_Hz == 50.0
    assert [p.phase for p in reading.phases] == ["L1", "L2", "L3"]
    for phase in reading.phases:
        assert phase.power_W == pytest.approx(7_360.0 / 3, rel=1e-6)
        assert phase.voltage_V == 230.0
        assert phase.energy_Wh == pytest.approx(12_500.0 / 3, abs=1.0)


async def test_energy_rises_as_the_meter_counts(meter: ModbusMeter, sim: MeterSimulator) -> None:
    await meter.start()
    first = meter.read(0.0).energy_Wh
    sim.load(400_000.0)  # a lot of power, so the float32 kWh register visibly moves
    served = sim.requests
    await sim.served(served + 6)
    assert meter.read(0.0).energy_Wh > first
    assert meter.polls >= 3


async def test_each_health_change_is_logged_once_not_each_poll(
    meter: ModbusMeter, sim: MeterSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    watch = Watch(meter)
    await meter.start()
    # The first answer may come from a later poll than start()'s own (a slow pty): wait for it,
    # so its "answers" line is not among the changes counted below.
    await watch.until(MeterState.OK)
    with caplog.at_level(logging.INFO, "hilsim.meter"):
        before = len(caplog.records)  # only this window's lines are counted
        sim.answering.clear()  # the meter hangs: requests arrive, answers do not
        heard = sim.received
        await watch.until(MeterState.RETRYING)
        await sim.heard(heard + 4)  # several failed polls while retrying
        failed = await watch.until(MeterState.FAILED)
        await sim.heard(sim.received + 2)  # and more after failing
        sim.answering.set()
        await watch.until(MeterState.OK)
    assert failed.problem == Problem.NO_ANSWER and "did not answer within 0.5 s" in failed.detail
    records = [r for r in caplog.records[before:] if r.name == "hilsim.meter.modbus"]
    assert [r.levelname for r in records] == ["WARNING", "ERROR", "INFO"], caplog.text
    assert "no answer" in records[0].getMessage()
    assert "PowerMeterFailure" in records[1].getMessage()
    assert "answers again after" in records[2].getMessage()
    assert [h.state for h in watch.seen] == [
        MeterState.OK,  # the first answer, at start
        MeterState.RETRYING,
        MeterState.FAILED,
        MeterState.OK,
    ]


async def test_failed_only_after_fault_after_s(meter: ModbusMeter, sim: MeterSimulator) -> None:
    watch = Watch(meter)
    await meter.start()
    sim.answering.clear()
    retrying = await watch.until(MeterState.RETRYING)
    failed = await watch.until(MeterState.FAILED)
    assert failed.since - retrying.since >= 1.0 - 0.05  # fault_after_s from the first failure
    sim.answering.set()
    await watch.until(MeterState.OK)


async def test_garbled_answers(meter: ModbusMeter, sim: MeterSimulator) -> None:
    watch = Watch(meter)
    await meter.start()
    sim.garble = True
    health = await watch.until(MeterState.RETRYING)
    assert health.problem == Problem.GARBLED
    assert "no valid frame" in health.detail
    assert (await watch.until(MeterState.FAILED)).problem == Problem.GARBLED
    sim.garble = False
    await watch.until(MeterState.OK)
    assert meter.read(0.0).energy_Wh >= 12_500.0 - 1.0


async def test_a_slow_meter_is_retried_and_recovers(
    meter: ModbusMeter, sim: MeterSimulator
) -> None:
    watch = Watch(meter)
    await meter.start()
    before = meter.read(0.0).energy_Wh
    sim.delay_s = 0.7  # slower than the 0.5 s timeout: late answers cross later requests
    health = await watch.until(MeterState.RETRYING)
    assert health.problem in (Problem.NO_ANSWER, Problem.GARBLED)
    await watch.until(MeterState.FAILED)
    sim.delay_s = 0.0
    await watch.until(MeterState.OK)
    assert meter.read(0.0).energy_Wh >= before


async def test_unplugged_adapter(
    meter: ModbusMeter, sim: MeterSimulator, cable: VirtualCable
) -> None:
    watch = Watch(meter)
    await meter.start()
    await sim.stop()
    await cable.unplug()
    health = await watch.until(MeterState.RETRYING)
    assert health.problem in (Problem.PORT_MISSING, Problem.PORT_ERROR)
    failed = await watch.until(MeterState.FAILED)
    assert failed.problem == Problem.PORT_MISSING
    assert "does not exist (USB-RS485 adapter unplugged?)" in failed.detail
    await cable.plug()
    await sim.start()
    await watch.until(MeterState.OK)
    assert meter.read(0.0).energy_Wh >= 12_500.0 - 1.0


async def test_a_meter_absent_at_start_is_a_state_not_an_error(cable: VirtualCable) -> None:
    ms = settings(cable, fault_after_s=0.0)
    m = ModbusMeter(ms, ModbusLink(ms), name="C1 meter")
    watch = Watch(m)
    try:
        await m.start()  # no server at the far end: times out once, returns
        assert m.health.state == MeterState.RETRYING
        assert m.health.problem == Problem.NO_ANSWER
        await watch.until(MeterState.FAILED)
        assert m.read(0.0).energy_Wh == 0.0 and not m.read(0.0).measured
    finally:
        await m.close()


async def test_wrong_kind_gets_the_meters_exception_response(cable: VirtualCable) -> None:
    ms = settings(cable)  # reading an SDM630's registers ...
    async with MeterSimulator(cable.meter_port, SDM120):  # ... from an SDM120
        m = ModbusMeter(ms, ModbusLink(ms), name="C1 meter")
        try:
            await m.start()
            assert m.health.problem == Problem.REFUSED
            assert "exception 2 (illegal data address)" in m.health.detail
        finally:
            await m.close()


async def test_implausible_values_are_not_taken(meter: ModbusMeter, sim: MeterSimulator) -> None:
    watch = Watch(meter)
    await meter.start()
    good = meter.read(0.0)
    sim.values["frequency_Hz"] = float("nan")
    health = await watch.until(MeterState.RETRYING)
    assert health.problem == Problem.IMPLAUSIBLE and "frequency_Hz is nan" in health.detail
    assert meter.read(0.0) == good  # the last good reading stays
    sim.values["frequency_Hz"] = 50.0
    await watch.until(MeterState.OK)


async def test_counter_reset_never_yields_a_decreasing_register(
    meter: ModbusMeter, sim: MeterSimulator
) -> None:
    await meter.start()
    sim.load(0.0)
    await sim.served(sim.requests + 4)
    before = meter.read(0.0)
    sim.set_energy(0.0)
    await sim.served(sim.requests + 4)
    after = meter.read(0.0)
    assert after.energy_Wh == pytest.approx(before.energy_Wh)
    for b, a in zip(before.phases, after.phases, strict=True):
        assert a.energy_Wh is not None and b.energy_Wh is not None
        assert a.energy_Wh >= b.energy_Wh


async def test_two_meters_share_one_bus(cable: VirtualCable) -> None:
    one = settings(cable, register_map=SDM120, unit_id=1)
    two = settings(cable, register_map=SDM120, unit_id=2)
    link = ModbusLink(one)
    first = ModbusMeter(one, link, name="C1 meter")
    second = ModbusMeter(two, link, name="C2 meter")
    async with MeterSimulator(cable.meter_port, SDM120, unit_id=1) as sim:
        sim.set_energy(500.0)
        try:
            await asyncio.gather(first.start(), second.start())
            assert first.health.state == MeterState.OK
            assert first.read(0.0).energy_Wh == pytest.approx(500.0, abs=0.1)
            assert second.health.problem == Problem.NO_ANSWER  # nobody at unit 2
        finally:
            await first.close()
            assert link.connected  # still in use by the second meter
            await second.close()
            assert not link.connected


def _on_disk(path: str) -> bool:
    return os.path.lexists(path)  # the link itself, dangling or not


async def _read_from(fd: int, size: int, timeout: float = 5.0) -> bytes:
    """`size` bytes from a non-blocking fd, waiting on the event loop (the cable copies there)."""
    loop = asyncio.get_running_loop()
    data = b""
    async with asyncio.timeout(timeout):
        while len(data) < size:
            ready = asyncio.Event()
            loop.add_reader(fd, ready.set)
            try:
                await ready.wait()
            finally:
                loop.remove_reader(fd)
            data += os.read(fd, size - len(data))
    return data


async def test_the_virtual_cable_is_python_alone_and_unplugs_like_an_adapter(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(short_dir))  # no socat, no tool at all to be found
    cable = VirtualCable(short_dir)
    await cable.plug()
    try:
        meter = os.open(cable.meter_port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        cp = os.open(cable.charger_port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            assert os.isatty(meter) and os.isatty(cp)
            os.write(cp, b"\x01\x04\x00\x00")
            assert await _read_from(meter, 4) == b"\x01\x04\x00\x00"
            os.write(meter, b"\x0d\x0a\x00")  # raw: no CR/LF translation, no echo back
            assert await _read_from(cp, 3) == b"\x0d\x0a\x00"
            with pytest.raises(BlockingIOError):
                os.read(meter, 16)
            await cable.unplug()
            assert not _on_disk(cable.meter_port) and not _on_disk(cable.charger_port)
            # A hung-up tty, as a pulled adapter: reads end, writes fail.
            assert os.read(cp, 1) == b""
            with pytest.raises(OSError):
                os.write(cp, b"x")
        finally:
            os.close(meter)
            os.close(cp)
        await cable.plug()  # and back in, at the same paths
        assert cable.plugged and _on_disk(cable.charger_port)
    finally:
        await cable.unplug()


def test_backoff_doubles_up_to_the_cap(cable: VirtualCable) -> None:
    ms = settings(cable, poll_interval_s=0.5, retry_max_s=3.0)
    m = ModbusMeter(ms, ModbusLink(ms))
    delays = []
    for failures in range(6):
        m.failures = failures
        delays.append(m.next_delay())
    assert delays == [0.5, 0.5, 1.0, 2.0, 3.0, 3.0]


def test_a_plain_run_does_not_import_pymodbus() -> None:
    code = (
        "import sys, hilsim.cli, hilsim.service, hilsim.meter.config, hilsim.meter.probe;"
        "hilsim.cli._parser();"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pymodbus', 'serial')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == "[]"
