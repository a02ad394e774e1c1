"""A meter at the far end of a serial cable, for benches without one (and for tests and benchmarks).

`VirtualCable` joins two pseudo-terminals from `os.openpty()` (Python alone, no socat), so the
charge point opens a device path exactly as it would open a USB-RS485 adapter; `unplug()` makes
both ends vanish like a pulled adapter. `MeterSimulator` is pymodbus's own RTU server (the
`SimDevice` API, whose `action` callback fills the registers at each request) serving a register
map with live values: energy integrates the power over time as a real meter's does. It can also
misbehave on purpose: hold its answers (a slow or dead meter) or garble them (noise, wrong baud
rate).

This module imports pymodbus at import time; import it only where a simulated meter is wanted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from hilsim.meter.registers import PHASES, RegisterMap

log = logging.getLogger(__name__)


class VirtualCable:
    """Two device paths joined like a null-modem cable: two pseudo-terminals, their masters bridged.

    Each end is the slave side of a pty from `os.openpty()`, linked at `meter_port` and
    `charger_port`; whatever one end's user writes comes out at the other, copied between the
    masters by readers on the event loop `plug()` runs in (so the cable carries bytes while that
    loop runs, as the pymodbus server and client on it need anyway). Python alone, no socat.

    The cable holds each slave open itself, so a user closing and reopening its end (a client
    reconnecting) never hangs the master up. Bytes for an end whose input queue is full are
    dropped, as on a bus where nobody listens; pyserial flushes the queue when it opens the port.

    Baud rate, parity and stop bits are set on the ptys as on an adapter (termios accepts them)
    but a pty does not pace bytes: a frame crosses in microseconds whatever the speed, and a
    mismatch between the two ends' settings garbles nothing (`MeterSimulator.garble` does that).
    """

    def __init__(self, directory: Path | str, *, meter_end: str = "meter", charger_end: str = "cp"):
        directory = Path(directory)
        self.meter_port = str(directory / meter_end)
        self.charger_port = str(directory / charger_end)
        #: (master, slave) of the meter's end and of the charger's end while plugged.
        self._ends: list[tuple[int, int]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def plugged(self) -> bool:
        return bool(self._ends)

    async def plug(self) -> None:
        """Create both ends (their device paths exist when this returns)."""
        if self._ends:
            return
        loop = asyncio.get_running_loop()
        try:
            for link in (self.meter_port, self.charger_port):
                master, slave = os.openpty()
                self._ends.append((master, slave))
                # Raw, no echo, before anyone opens it: an echo would run back down the cable.
                tty.setraw(slave)
                os.set_blocking(master, False)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(link)  # a link left by a cable that was not unplugged
                os.symlink(os.ttyname(slave), link)
            (meter, _), (charger, _) = self._ends
            loop.add_reader(meter, self._carry, meter, charger)
            loop.add_reader(charger, self._carry, charger, meter)
        except BaseException:
            self._close()
            raise
        self._loop = loop

    def _carry(self, source: int, target: int) -> None:
        try:
            data = os.read(source, 4096)
        except OSError as exc:  # EIO: cannot happen while the cable holds the slave open
            log.debug("virtual cable: reading fd %d: %s", source, exc)
            return
        try:
            written = os.write(target, data)
        except BlockingIOError:
            written = 0
        if written < len(data):
            log.debug("virtual cable: far end full, %d bytes dropped", len(data) - written)

    async def unplug(self) -> None:
        """Both ends disappear, as when the adapter is pulled out."""
        self._close()

    def _close(self) -> None:
        loop, self._loop = self._loop, None
        ends, self._ends = self._ends, []
        for master, slave in ends:
            if loop is not None:
                loop.remove_reader(master)
            os.close(master)  # users of the slave now read EOF/EIO: the adapter is gone
            os.close(slave)
        for link in (self.meter_port, self.charger_port):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)

    async def __aenter__(self) -> VirtualCable:
        await self.plug()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.unplug()


class MeterSimulator:
    """pymodbus's RTU server on a serial port, answering as the meter of `register_map`."""

    def __init__(
        self,
        port: str,
        register_map: RegisterMap,
        *,
        unit_id: int = 1,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.port = port
        self.register_map = register_map
        self.unit_id = unit_id
        self.baudrate = baudrate
        self.parity = parity
        self.stopbits = stopbits
        self.clock = clock
        #: Current values by measurand; energies also rise by themselves with the power.
        self.values: dict[str, float] = {}
        #: Cleared: requests are held until it is set again (a slow, or hung, meter).
        self.answering = asyncio.Event()
        self.answering.set()
        #: True: answers are sent garbled (noise on the line, a wrong baud rate).
        self.garble = False
        #: Seconds each answer takes (a slow meter, or a long bus); 0 answers at once.
        self.delay_s = 0.0
        #: Requests received so far, and answered so far.
        self.received = 0
        self.requests = 0
        self._served = asyncio.Condition()
        self._since: float | None = None
        self._server: ModbusSerialServer | None = None
        self._functions = {r.function for r in register_map.registers}
        self.load(0.0)
        for name in register_map.measurands:
            if name.startswith("energy_Wh"):
                self.values[name] = 0.0

    # -- what the meter measures ---------------------------------------------------------------

    def load(self, power_W: float, voltage_V: float = 230.0, frequency_Hz: float = 50.0) -> None:
        """An EV drawing `power_W`, spread evenly over the phases the meter has."""
        self._integrate()
        phases = PHASES if self.register_map.three_phase else ()
        share = power_W / len(phases) if phases else power_W
        current = share / voltage_V if voltage_V > 0 else 0.0
        self.values.update(
            power_W=power_W, current_A=current, voltage_V=voltage_V, frequency_Hz=frequency_Hz
        )
        for p in phases:
            self.values[f"power_W_{p}"] = share
            self.values[f"current_A_{p}"] = current
            self.values[f"voltage_V_{p}"] = voltage_V

    def set_energy(self, energy_Wh: float) -> None:
        """Set the counter, as a reset (0) or a swap to another meter does."""
        self._integrate()
        phases = [n for n in self.values if n.startswith("energy_Wh_")]
        self.values["energy_Wh"] = energy_Wh
        for name in phases:
            self.values[name] = energy_Wh / len(phases)

    def _integrate(self) -> None:
        now = self.clock()
        if self._since is not None and now > self._since:
            hours = (now - self._since) / 3600.0
            for name in list(self.values):
                if name.startswith("energy_Wh"):
                    power = self.values.get(name.replace("energy_Wh", "power_W"), 0.0)
                    self.values[name] += max(power, 0.0) * hours
        self._since = now

    # -- the server ----------------------------------------------------------------------------

    async def start(self) -> None:
        end = max(r.end for r in self.register_map.registers)
        device = SimDevice(
            id=self.unit_id,
            simdata=[SimData(0, count=end, datatype=DataType.REGISTERS)],
            action=self._action,
        )
        self._server = ModbusSerialServer(
            device,
            port=self.port,
            baudrate=self.baudrate,
            parity=self.parity,
            stopbits=self.stopbits,
            trace_packet=self._trace,
        )
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()

    async def __aenter__(self) -> MeterSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def served(self, count: int, timeout: float = 5.0) -> None:
        """Wait until `count` requests in all have been answered."""
        async with asyncio.timeout(timeout), self._served:
            await self._served.wait_for(lambda: self.requests >= count)

    async def heard(self, count: int, timeout: float = 5.0) -> None:
        """Wait until `count` requests in all have arrived (answered or not)."""
        async with asyncio.timeout(timeout), self._served:
            await self._served.wait_for(lambda: self.received >= count)

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: Any,
    ) -> ExcCodes | None:
        if function_code not in self._functions or set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION
        async with self._served:
            self.received += 1
            self._served.notify_all()
        await self.answering.wait()
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)  # the simulated meter's own slowness
        self._integrate()
        for r in self.register_map.registers:
            if r.function == function_code and address <= r.address and r.end <= address + count:
                value = self.values.get(r.measurand, 0.0)
                registers[r.address - start_address : r.end - start_address] = r.encode(value)
        async with self._served:
            self.requests += 1
            self._served.notify_all()
        return None

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending or not data:
            return data
        if data[0] != self.unit_id:
            return b""  # pymodbus answers unknown unit ids; a real bus stays silent
        if self.garble and len(data) > 2:
            return data[:2] + bytes(b ^ 0x5A for b in data[2:])
        return data
