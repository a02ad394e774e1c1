"""Modbus RTU meters over a serial port, through pymodbus's async client on pyserial.

`ModbusLink` is one serial port, i.e. one RS-485 bus: several meters (unit ids) may share it, and
it translates every pymodbus/pyserial failure into a `MeterFault` naming the problem in bench
words (no answer, garbled answer, exception response, adapter unplugged). `ModbusMeter` is the
`MeterSource`: it polls its unit on the link, keeps the last good reading for the metering loop,
retries a failing meter with backoff, and reports each change of health once.

Framing and CRC are pymodbus's; this module only chooses what to read and what the answer means.
pymodbus is imported when the first link opens, never at import time of the package.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from hilsim.errors import MeterError
from hilsim.meter.base import (
    HealthListener,
    MeterHealth,
    MeterReading,
    MeterState,
    PhaseReading,
    Problem,
)
from hilsim.meter.config import MeterSettings
from hilsim.meter.continuity import MonotonicRegister
from hilsim.meter.registers import COUNTERS, PHASES, Block, RegisterMap
from hilsim.tasks import TaskSet

log = logging.getLogger(__name__)

#: Modbus exception codes (Modbus application protocol, section 7), as a person needs them.
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
_MAX_ENERGY_WH = 1e12  # beyond any meter's display; a larger value is a decoding error


class MeterFault(MeterError):
    """One failed poll, with the category that drives the meter's health."""

    def __init__(self, problem: Problem, detail: str) -> None:
        super().__init__(f"{problem}: {detail}")
        self.problem = problem
        self.detail = detail


def _import_client() -> Any:
    try:
        import serial  # noqa: F401  (pymodbus needs it for serial ports but imports it softly)
        from pymodbus.client import AsyncModbusSerialClient
    except ImportError as exc:
        raise MeterError(
            f"a Modbus meter needs pymodbus and pyserial ({exc}); "
            "install them with: pip install 'pymodbus[serial]'"
        ) from None
    # pymodbus logs every failed request and reconnect at WARNING/ERROR; the meter logs each
    # change of health once instead. Leave it alone if someone configured it on purpose.
    library_log = logging.getLogger("pymodbus")
    if library_log.level == logging.NOTSET:
        library_log.setLevel(logging.CRITICAL)
    return AsyncModbusSerialClient


class ModbusLink:
    """One serial port shared by the meters on its bus; one request on the wire at a time."""

    def __init__(self, line: MeterSettings) -> None:
        self.port = line.port
        self.baudrate = line.baudrate
        self.parity = line.parity
        self.stopbits = line.stopbits
        self.timeout_s = line.timeout_s
        self._client: Any = None
        self._lock = asyncio.Lock()
        self._heard = False
        self._users = 0

    @property
    def connected(self) -> bool:
        return self._client is not None and bool(self._client.connected)

    def acquire(self) -> None:
        self._users += 1

    def release(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users == 0:
            self.close()

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()

    async def read(self, unit_id: int, register_map: RegisterMap) -> dict[str, float]:
        """One poll: every block of the map, decoded and checked. Raises MeterFault."""
        async with self._lock:
            await self._open()
            words = [await self._read_block(unit_id, block) for block in register_map.blocks]
        values = register_map.decode(words)
        _check_plausible(values)
        return values

    # -- internals -----------------------------------------------------------------------------

    def _trace(self, sending: bool, data: bytes) -> bytes:
        """pymodbus's packet hook, used only to notice that *something* came back."""
        if not sending and data:
            self._heard = True
        return data

    async def _open(self) -> None:
        if self._client is None:
            client_class = _import_client()
            self._client = client_class(
                self.port,
                baudrate=self.baudrate,
                bytesize=8,
                parity=self.parity,
                stopbits=self.stopbits,
                timeout=self.timeout_s,
                retries=0,  # retries are the meter's, with backoff and health reporting
                reconnect_delay=0,  # so is reconnecting
                trace_packet=self._trace,
                name=f"meter {self.port}",
            )
        if self._client.connected:
            return
        if not await self._client.connect():
            raise self._port_fault()

    def _port_exists(self) -> bool:
        """A stat of a device node: not worth a thread."""
        return os.path.exists(self.port)

    def _port_fault(self) -> MeterFault:
        if not self._port_exists():
            return MeterFault(
                Problem.PORT_MISSING, f"{self.port} does not exist (USB-RS485 adapter unplugged?)"
            )
        if not os.access(self.port, os.R_OK | os.W_OK):
            return MeterFault(
                Problem.PORT_ERROR,
                f"no permission to open {self.port} (is the user in the dialout group?)",
            )
        return MeterFault(
            Problem.PORT_ERROR, f"cannot open {self.port} (in use by another program?)"
        )

    async def _read_block(self, unit_id: int, block: Block) -> list[int]:
        from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

        client = self._client
        read = client.read_input_registers if block.function == 4 else client.read_holding_registers
        self._heard = False
        try:
            response = await read(block.address, count=block.count, device_id=unit_id)
        except (ModbusIOException, ConnectionException) as exc:
            if not client.connected:
                client.close()
                if self._port_exists():
                    raise MeterFault(
                        Problem.PORT_ERROR, f"{self.port} closed while reading ({exc})"
                    ) from None
                raise self._port_fault() from None
            if self._heard:
                raise MeterFault(
                    Problem.GARBLED,
                    f"bytes came back from unit {unit_id} but no valid frame within "
                    f"{self.timeout_s:g} s (baud rate or parity wrong? noise on the line?)",
                ) from None
            raise MeterFault(
                Problem.NO_ANSWER,
                f"unit {unit_id} did not answer within {self.timeout_s:g} s "
                "(wiring A/B, unit id, baud rate, power?)",
            ) from None
        except ModbusException as exc:
            raise MeterFault(Problem.GARBLED, str(exc)) from None
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            name = EXCEPTION_NAMES.get(code, "unknown")
            raise MeterFault(
                Problem.REFUSED,
                f"unit {unit_id} answered exception {code} ({name}) to function "
                f"{block.function} at 0x{block.address:04X}+{block.count} (wrong meter kind?)",
            )
        registers = list(response.registers)
        if len(registers) != block.count:
            raise MeterFault(
                Problem.GARBLED,
                f"unit {unit_id} sent {len(registers)} registers for a read of {block.count} "
                "(a late answer to an earlier request?)",
            )
        return registers


def _check_plausible(values: dict[str, float]) -> None:
    for name, value in values.items():
        if not math.isfinite(value):
            raise MeterFault(Problem.IMPLAUSIBLE, f"{name} is {value}")
        if name.startswith("energy_Wh") and not 0.0 <= value <= _MAX_ENERGY_WH:
            raise MeterFault(Problem.IMPLAUSIBLE, f"{name} is {value:g}")


class ModbusMeter:
    """A `MeterSource` polling one unit on a `ModbusLink`."""

    def __init__(
        self,
        settings: MeterSettings,
        link: ModbusLink,
        *,
        name: str = "meter",
        floor_Wh: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`floor_Wh`: the energy register last reported for this connector (from the store)."""
        self.settings = settings
        self.link = link
        self.name = name
        self.clock = clock
        self.health_listeners: list[HealthListener] = []
        self.polls = 0  # answered polls since start
        self.failures = 0  # failed polls since the last answered one
        self._health = MeterHealth(MeterState.STARTING, since=clock())
        # Until the first answer: the register last reported (not measured, no time taken).
        self._reading = MeterReading(floor_Wh, None, None, None)
        self._counters = {
            m: MonotonicRegister(f"{name} {m}", floor_Wh=floor_Wh if m == "energy_Wh" else 0.0)
            for m in COUNTERS
            if m in settings.register_map.measurands
        }
        self._failing_since: float | None = None
        self._fault_timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Future[None] | None = None
        self._tasks = TaskSet("meter")
        self._closing = False
        self._problems: set[Problem] = set()  # seen during the current outage

    @property
    def description(self) -> str:
        return self.settings.description

    @property
    def health(self) -> MeterHealth:
        return self._health

    async def start(self) -> None:
        """Try one poll now, so a working meter has a reading before the first transaction."""
        self.link.acquire()
        await self._attempt()
        self._task = self._tasks.spawn(self._run(), f"{self.name} polling")

    async def close(self) -> None:
        self._closing = True
        if self._fault_timer is not None:
            self._fault_timer.cancel()
            self._fault_timer = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.link.release()

    def offer(self, power_W: float, now: float) -> None:
        """A real meter measures what flows; the offer changes nothing."""

    def read(self, now: float) -> MeterReading:
        return self._reading

    # -- polling -------------------------------------------------------------------------------

    def next_delay(self) -> float:
        """The poll interval while answering; doubling from it up to retry_max_s while failing."""
        s = self.settings
        if self.failures == 0:
            return s.poll_interval_s
        return min(s.poll_interval_s * 2.0 ** (self.failures - 1), s.retry_max_s)

    async def _run(self) -> None:
        # The flag, not only the cancellation, ends the loop: on Python 3.11 `asyncio.wait_for`
        # (inside pymodbus) swallows a cancel that lands while its answer arrives.
        while not self._closing:
            await asyncio.sleep(self.next_delay())
            await self._attempt()

    async def _attempt(self) -> None:
        try:
            values = await self.link.read(self.settings.unit_id, self.settings.register_map)
        except MeterFault as fault:
            self._failed(fault)
        except MeterError as exc:  # pymodbus missing: say so on every state change
            self._failed(MeterFault(Problem.PORT_ERROR, str(exc)))
        except Exception as exc:  # an unforeseen library error must not end metering
            log.debug("%s: unexpected error while polling", self.name, exc_info=True)
            self._failed(MeterFault(Problem.PORT_ERROR, f"{type(exc).__name__}: {exc}"))
        else:
            self._answered(values)

    def _answered(self, values: dict[str, float]) -> None:
        now = self.clock()
        counted = {m: reg.update(values[m], now) for m, reg in self._counters.items()}
        phases = []
        for p in PHASES:
            phase = PhaseReading(
                p,
                energy_Wh=counted.get(f"energy_Wh_{p}"),
                power_W=values.get(f"power_W_{p}"),
                current_A=values.get(f"current_A_{p}"),
                voltage_V=values.get(f"voltage_V_{p}"),
            )
            if any(
                x is not None
                for x in (phase.energy_Wh, phase.power_W, phase.current_A, phase.voltage_V)
            ):
                phases.append(phase)
        self._reading = MeterReading(
            energy_Wh=counted["energy_Wh"],
            power_W=_total(values.get("power_W"), [p.power_W for p in phases], sum),
            current_A=_total(values.get("current_A"), [p.current_A for p in phases], _mean),
            voltage_V=_total(values.get("voltage_V"), [p.voltage_V for p in phases], _mean),
            phases=tuple(phases),
            frequency_Hz=values.get("frequency_Hz"),
            taken_at=now,
            measured=True,
        )
        self.polls += 1
        self.failures = 0
        if self._fault_timer is not None:
            self._fault_timer.cancel()
            self._fault_timer = None
        self._set(MeterState.OK, None, "")
        self._failing_since = None

    def _failed(self, fault: MeterFault) -> None:
        self.failures += 1
        state = self._health.state
        if state in (MeterState.OK, MeterState.STARTING):
            self._failing_since = self.clock()
            self._fault_timer = asyncio.get_running_loop().call_later(
                self.settings.fault_after_s, self._escalate
            )
            state = MeterState.RETRYING
        self._set(state, fault.problem, fault.detail)

    def _escalate(self) -> None:
        self._fault_timer = None
        if self._health.state == MeterState.RETRYING:
            self._set(MeterState.FAILED, self._health.problem, self._health.detail)

    def _set(self, state: MeterState, problem: Problem | None, detail: str) -> None:
        """Change health; log and tell listeners only when the state changes.

        A meter failing in two ways by turns (a slow one: silence, then a late answer taken for
        garbage) must not log each poll: within one outage each new problem is logged once.
        """
        old = self._health
        if state == old.state:
            if problem is not None and problem not in self._problems:
                self._problems.add(problem)
                log.info("%s: also %s: %s", self.name, problem, detail)
            self._health = replace(old, problem=problem, detail=detail)
            return
        now = self.clock()
        if state == MeterState.RETRYING or problem is None:
            self._problems = set()  # a new outage (or its end)
        if problem is not None:
            self._problems.add(problem)
        self._health = MeterHealth(state, problem, detail, since=now)
        self._log_change(old, self._health, now)
        for listener in list(self.health_listeners):
            try:
                listener(self._health)
            except Exception:
                log.exception("%s: health listener failed", self.name)

    def _log_change(self, old: MeterHealth, new: MeterHealth, now: float) -> None:
        where = f"{self.name} ({self.description})"
        if new.state == MeterState.OK:
            if old.state == MeterState.STARTING:
                log.info("%s answers: %.1f Wh", where, self._reading.energy_Wh)
            else:
                since = self._failing_since if self._failing_since is not None else old.since
                log.info("%s answers again after %.1f s (%s)", where, now - since, old.problem)
        elif new.state == MeterState.RETRYING and old.state != MeterState.RETRYING:
            log.warning(
                "%s: %s: %s; retrying every %g..%g s, the connector faults after %g s",
                where,
                new.problem,
                new.detail,
                self.settings.poll_interval_s,
                self.settings.retry_max_s,
                self.settings.fault_after_s,
            )
        elif new.state == MeterState.FAILED and old.state != MeterState.FAILED:
            failing = now - (self._failing_since if self._failing_since is not None else now)
            log.error(
                "%s failing for %.1f s (%s: %s): PowerMeterFailure; still retrying",
                where,
                failing,
                new.problem,
                new.detail,
            )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _total(
    value: float | None, parts: list[float | None], combine: Callable[[list[float]], float]
) -> float | None:
    """The meter's own total, else one computed from the phases that report it."""
    if value is not None:
        return value
    known = [p for p in parts if p is not None]
    return combine(known) if known else None
