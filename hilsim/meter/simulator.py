"""A meter at the far end of a serial cable, for benches without one (and for tests and benchmarks).

`VirtualCable` joins two pseudo-terminals with socat, so the charge point opens a device path
exactly as it would open a USB-RS485 adapter; `unplug()` makes both ends vanish like a pulled
adapter. `MeterSimulator` is pymodbus's own RTU server (the `SimDevice` API, whose `action`
callback fills the registers at each request) serving a register map with live values: energy
integrates the power over time as a real meter's does. It can also misbehave on purpose: hold its
answers (a slow or dead meter) or garble them (noise, wrong baud rate).

This module imports pymodbus at import time; import it only where a simulated meter is wanted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from hilsim.errors import MeterError
from hilsim.meter.registers import PHASES, RegisterMap

log = logging.getLogger(__name__)


class VirtualCable:
    """Two device paths joined like a null-modem cable (socat between two pseudo-terminals)."""

    def __init__(self, directory: Path | str, *, meter_end: str = "meter", charger_end: str = "cp"):
        directory = Path(directory)
        self.meter_port = str(directory / meter_end)
        self.charger_port = str(directory / charger_end)
        self._process: asyncio.subprocess.Process | None = None

    @property
    def plugged(self) -> bool:
        return self._process is not None

    async def plug(self, timeout: float = 5.0) -> None:
        """Create both ends; returns once socat has opened them (it says so on stderr)."""
        if self._process is not None:
            return
        socat = shutil.which("socat")
        if socat is None:
            raise MeterError("the virtual cable needs socat (apt-get install socat)")
        process = await asyncio.create_subprocess_exec(
            socat,
            "-d",
            "-d",
            f"pty,raw,echo=0,link={self.meter_port}",
            f"pty,raw,echo=0,link={self.charger_port}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stderr is not None
        said: list[bytes] = []
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = await process.stderr.readline()
                    if not line:
                        raise MeterError(
                            "socat ended: " + b"".join(said).decode(errors="replace").strip()
                        )
                    said.append(line)
                    if b"starting data transfer loop" in line:
                        break
        except BaseException:
            await _end(process)
            raise
        self._process = process

    async def unplug(self) -> None:
        """Both ends disappear, as when the adapter is pulled out."""
        process, self._process = self._process, None
        if process is not None:
            await _end(process)

    async def __aenter__(self) -> VirtualCable:
        await self.plug()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.unplug()


async def _end(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
    await process.communicate()


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
