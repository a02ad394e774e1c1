"""Real-part fixtures: a real CSMS on 127.0.0.1, real SQLite files, real Unix sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fileserver import closed_port

from hilsim.config import Settings, parse_settings
from hilsim.control import request
from hilsim.csms import CentralSystem, ChargePointSession
from hilsim.ocpp.transport import Backoff
from hilsim.service import Service

if TYPE_CHECKING:
    from hilsim.meter.simulator import MeterSimulator, VirtualCable

CP_ID = "CP-TEST"
TAG = "04A2B3C4"
FAST_BACKOFF = Backoff(initial_s=0.05, factor=2.0, cap_s=0.2)


#: How long the end of the run waits for threads a test left running (see pytest_unconfigure).
LEFTOVER_THREAD_GRACE_S = 10.0
_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


def pytest_unconfigure(config: pytest.Config) -> None:
    """End the run even when a test left a thread that never ends.

    aiosqlite's worker is not a daemon thread. A test that wedges it (a store deadlock, the
    failure we most need to see) times out and fails, but then the interpreter waits on that
    thread at exit for ever and CI hangs until its own limit, hiding the report. After the
    summary is printed, give leftover threads a grace period, then name them with their stacks
    and exit with the run's status (1 if it had passed: a thread left running is a leak).
    """
    if not _exit_status:
        return
    leftovers = [
        thread
        for thread in threading.enumerate()
        if thread is not threading.main_thread() and not thread.daemon
    ]
    deadline = time.monotonic() + LEFTOVER_THREAD_GRACE_S
    for thread in leftovers:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    stuck = [thread for thread in leftovers if thread.is_alive()]
    if not stuck:
        return
    frames = sys._current_frames()
    sys.stderr.write(f"\n{len(stuck)} thread(s) still running after the tests; exiting anyway:\n")
    for thread in stuck:
        sys.stderr.write(f"--- {thread.name}\n")
        frame = frames.get(thread.ident or -1)
        if frame is not None:
            sys.stderr.write("".join(traceback.format_stack(frame)))
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(_exit_status[-1] or 1)


@pytest.fixture(autouse=True)
def _logging_levels_restored() -> Iterator[None]:
    """A test that runs the CLI in-process (`hilsim.cli.main`) sets the root logger's level, as
    the CLI must; without this it stays for every later test, whose caplog then holds INFO lines
    from before its own `caplog.at_level` window, and counts of log lines depend on test order."""
    loggers = [logging.getLogger(), logging.getLogger("hilsim")]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory: Unix socket paths must stay under 108 bytes, pytest's tmp_path may not."""
    path = Path(tempfile.mkdtemp(prefix="hs-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_settings(
    directory: Path,
    csms_url: str,
    *,
    connectors: int = 2,
    extra_charge_point: str = "",
    phases: int = 1,
) -> Settings:
    """``phases``: how many phases connector 1 (the 11 kW one) is wired to; the others have 1."""
    tables = "\n".join(
        f"[[connector]]\nid = {i}\nvoltage_V = 230.0\nmax_power_W = {11000 if i == 1 else 7400}\n"
        + (f"phases = {phases}\n" if i == 1 and phases != 1 else "")
        for i in range(1, connectors + 1)
    )
    text = f"""
[charge_point]
id = "{CP_ID}"
csms_url = "{csms_url}"
vendor = "hilsim"
model = "bench"
firmware_version = "9.9.9"
{extra_charge_point}
{tables}
[storage]
database = "{directory / 'hilsim.db'}"
[control]
socket = "{directory / 'ctl.sock'}"
[gpio]
backend = "mock"
"""
    path = directory / "hilsim.toml"
    path.write_text(text)
    return parse_settings(text, str(path))


@pytest.fixture
async def csms() -> AsyncIterator[CentralSystem]:
    async with CentralSystem("127.0.0.1", 0) as central:
        yield central


@dataclass
class Bench:
    """A running charge point connected to the CSMS, and helpers to drive it like a user."""

    settings: Settings
    service: Service
    csms: CentralSystem
    session: ChargePointSession
    task: asyncio.Task[None]
    starts: dict[int, dict[str, Any]] = field(default_factory=dict)  # last StartTransaction seen

    async def ctl(self, cmd: str, connector: int | None = None, **extra: Any) -> dict[str, Any]:
        payload: dict[str, Any] = {"cmd": cmd, **extra}
        if connector is not None:
            payload["connector"] = connector
        return await request(self.settings.control.socket, payload)

    async def status(self, connector: int, status: str, timeout: float = 5) -> dict[str, Any]:
        return await self.session.wait_for(
            "StatusNotification",
            lambda p: p["connectorId"] == connector and p["status"] == status,
            timeout=timeout,
        )

    def next_event(self, kind: type, connector: int | None = None) -> asyncio.Future[Any]:
        """A future for the outcome of the next event of ``kind`` fed to a connector's machine."""
        charger = self.service.charger
        assert charger is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def listener(cid: int, event: Any, outcome: Any) -> None:
            if isinstance(event, kind) and connector in (None, cid) and not future.done():
                future.set_result(outcome)
                charger.event_listeners.remove(listener)

        charger.event_listeners.append(listener)
        return future

    async def start_local(self, connector: int = 1, tag: str = TAG) -> int:
        """Plug in and present a tag; returns the transaction id once Charging."""
        assert (await self.ctl("plug", connector))["ok"]
        await self.status(connector, "Preparing")
        assert (await self.ctl("tag", connector, id_tag=tag))["ok"]
        start = await self.session.wait_for(
            "StartTransaction", lambda p: p["connectorId"] == connector
        )
        await self.status(connector, "Charging")
        assert start["idTag"] == tag
        self.starts[connector] = start
        charger = self.service.charger
        assert charger is not None
        tx_id = charger.transaction_id(connector)
        assert tx_id is not None
        return tx_id


async def start_service(settings: Settings) -> tuple[Service, asyncio.Task[None]]:
    service = Service(settings, backoff=FAST_BACKOFF, response_timeout=5)
    task = asyncio.create_task(service.run())
    ready = asyncio.create_task(service.ready.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()  # raises the failure
    assert ready in done, "service did not become ready"
    return service, task


async def stop_service(service: Service, task: asyncio.Task[None]) -> None:
    service.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)


@dataclass
class Served:
    """A charge point of either version served by the built-in CSMS (`serving`)."""

    settings: Settings
    service: Service
    task: asyncio.Task[None]
    session: ChargePointSession


@contextlib.asynccontextmanager
async def serving(directory: Path, version: str = "1.6") -> AsyncIterator[Served]:
    """The built-in CSMS on an ephemeral port and a charge point speaking ``version`` to it,
    connected (its last connector announced); the session's strict checks must find nothing."""
    async with CentralSystem("127.0.0.1", 0) as central:
        extra = f'ocpp_version = "{version}"'
        settings = make_settings(directory, central.url, extra_charge_point=extra)
        service, task = await start_service(settings)
        try:
            session = await central.wait_for_charge_point(CP_ID, timeout=10)
            key = "connectorId" if version == "1.6" else "evseId"
            await session.wait_for("StatusNotification", lambda p: p[key] == 2)
            yield Served(settings, service, task, session)
            assert session.violations == []
        finally:
            await stop_service(service, task)


@pytest.fixture
async def bench_factory(
    csms: CentralSystem, short_dir: Path
) -> AsyncIterator[Callable[..., Any]]:
    running: list[tuple[Service, asyncio.Task[None], ChargePointSession]] = []

    async def factory(**kwargs: Any) -> Bench:
        settings = make_settings(short_dir, csms.url, **kwargs)
        service, task = await start_service(settings)
        session = await csms.wait_for_charge_point(CP_ID, timeout=5)
        running.append((service, task, session))
        return Bench(settings, service, csms, session, task)

    yield factory
    for service, task, session in running:
        await stop_service(service, task)
        # Every frame the charge point sent must pass the official schemas, applied strictly.
        assert session.violations == []


@pytest.fixture
async def bench(bench_factory: Callable[..., Any]) -> Bench:
    bench: Bench = await bench_factory()
    for connector in (0, 1, 2):
        await bench.status(connector, "Available")
    return bench


#: The simulated meter's register at the start (float32 kWh is exact here, and fine-grained
#: enough to see energy rise).
METER_START_Wh = 12_500.0


@pytest.fixture
async def cable(short_dir: Path) -> AsyncIterator[VirtualCable]:
    """The virtual RS-485 cable: two ptys, the meter at one end, hilsim at the other."""
    from hilsim.meter.simulator import VirtualCable

    async with VirtualCable(short_dir) as cable:
        yield cable


@pytest.fixture
async def sim(cable: VirtualCable) -> AsyncIterator[MeterSimulator]:
    """An SDM630 on the cable at 9600 baud, its register at `METER_START_Wh`, no load."""
    from hilsim.meter.registers import SDM630
    from hilsim.meter.simulator import MeterSimulator

    simulator = MeterSimulator(cable.meter_port, SDM630, baudrate=9600)
    simulator.set_energy(METER_START_Wh)
    async with simulator:
        yield simulator


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses every connection for the whole test (see closed_port)."""
    with closed_port() as port:
        yield port
