"""A real `hilsim run` process under a real NOTIFY_SOCKET, as systemd would start it.

The test binds the Unix datagram socket systemd would, sets NOTIFY_SOCKET and WATCHDOG_USEC,
and reads what the service sends; the built-in CSMS sees the OCPP side. The service notifies with
systemd-python where it is installed and by itself where it is not; `WITHOUT_SYSTEMD_PYTHON`
makes a child lack it on any machine, so both ways run everywhere. Nothing sleeps: every
wait is a receive on the notify socket, a stderr line or a CSMS message, with a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hilsim.config import load_settings
from hilsim.control import request
from hilsim.csms import CentralSystem, ChargePointSession
from hilsim.daemon import load_bindings

from conftest import CP_ID, TAG, make_settings

#: Variables a test run may itself have inherited from systemd; the child must not see them.
_SYSTEMD_VARIABLES = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "INVOCATION_ID",
    "JOURNAL_STREAM",
    "LISTEN_FDS",
    "LISTEN_PID",
)


def require_systemd_python() -> None:
    """Skip where systemd-python cannot be had; in CI it must be there, so fail instead."""
    bindings = load_bindings()
    if bindings.available:
        return
    reason = (
        f"{bindings.missing}; install hilsim[systemd] (needs libsystemd-dev and pkg-config) "
        "to run this test"
    )
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the systemd tests: {reason}")
    pytest.skip(reason)


# -- the notify socket ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    at: float  # time.monotonic() when received
    assignments: dict[str, str]

    def __contains__(self, assignment: str) -> bool:
        name, _, value = assignment.partition("=")
        return self.assignments.get(name) == value


class NotifySocket:
    """The AF_UNIX datagram socket systemd listens on, bound by the test."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.received: list[Notification] = []

    def close(self) -> None:
        self.sock.close()

    async def receive(self, timeout: float) -> Notification:
        data = await asyncio.wait_for(
            asyncio.get_running_loop().sock_recv(self.sock, 4096), timeout
        )
        lines = data.decode().split("\n")
        note = Notification(time.monotonic(), dict(line.split("=", 1) for line in lines if line))
        self.received.append(note)
        return note

    async def expect(
        self, wanted: Callable[[Notification], bool], timeout: float = 10
    ) -> Notification:
        """Receive until a notification matches; TimeoutError names what came instead."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                note = await self.receive(max(remaining, 0.001))
            except TimeoutError:
                seen = [n.assignments for n in self.received[-5:]]
                raise TimeoutError(
                    f"no matching notification in {timeout} s; last: {seen}"
                ) from None
            if wanted(note):
                return note

    def pending(self) -> bytes | None:
        """A datagram already waiting, or None: for checking that nothing was sent."""
        try:
            return self.sock.recv(4096)
        except BlockingIOError:
            return None

    def statuses(self) -> list[str]:
        return [n.assignments["STATUS"] for n in self.received if "STATUS" in n.assignments]


# -- the child process ----------------------------------------------------------------------------


@dataclass
class Child:
    process: asyncio.subprocess.Process
    config: Path
    socket_path: Path
    lines: list[str] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    def start_reading(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))
            self._changed.set()

    async def line(self, pattern: str, timeout: float = 10, after: int = 0) -> str:
        """The first stderr line from index `after` on that matches the regex."""
        regex = re.compile(pattern)
        async with asyncio.timeout(timeout):
            while True:
                for text in self.lines[after:]:
                    if regex.search(text):
                        return text
                self._changed.clear()
                await self._changed.wait()

    async def ctl(self, cmd: str, **fields: object) -> dict[str, object]:
        return await request(self.socket_path, {"cmd": cmd, **fields})

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    async def exit_status(self, timeout: float = 15) -> int:
        status = await asyncio.wait_for(self.process.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, timeout)
        return status


def edit(config: Path, change: Callable[[str], str]) -> None:
    config.write_text(change(config.read_text()))


def hilsim_command() -> list[str]:
    script = Path(sys.executable).with_name("hilsim")
    return [str(script)] if script.exists() else [sys.executable, "-m", "hilsim"]


#: `hilsim` as on a pip install without libsystemd's headers: importing systemd-python fails
#: (Python's own way: a None entry in sys.modules), whether or not this machine has it.
WITHOUT_SYSTEMD_PYTHON = [
    sys.executable,
    "-c",
    "import sys; sys.modules['systemd'] = None\n"
    "from hilsim.cli import main; sys.exit(main(sys.argv[1:]))",
]


@contextlib.asynccontextmanager
async def running_hilsim(
    directory: Path,
    csms_url: str,
    *,
    notify: NotifySocket | None = None,
    watchdog_usec: int | None = None,
    command: list[str] | None = None,
    path_prefix: Path | None = None,
    extra_config: str = "",
    config: Path | None = None,
) -> AsyncIterator[Child]:
    """``config``: run that file (a second instance of one already running) instead of a new one."""
    settings = make_settings(directory, csms_url) if config is None else load_settings(config)
    config = Path(settings.source)
    if extra_config:
        edit(config, lambda text: text + extra_config)
    env = {k: v for k, v in os.environ.items() if k not in _SYSTEMD_VARIABLES}
    if notify is not None:
        env["NOTIFY_SOCKET"] = str(notify.path)
    if watchdog_usec is not None:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env.get('PATH', '')}"
    process = await asyncio.create_subprocess_exec(
        *(command or hilsim_command()),
        "run",
        "--config",
        str(config),
        cwd=directory,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    child = Child(process, config, settings.control.socket)
    child.start_reading()
    try:
        yield child
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if child._reader is not None:
            child._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await child._reader


@pytest.fixture
def notify(short_dir: Path) -> AsyncIterator[NotifySocket]:
    sock = NotifySocket(short_dir / "notify.sock")
    yield sock
    sock.close()


async def start_transaction(child: Child, csms: CentralSystem) -> ChargePointSession:
    """Plug in and present a tag on connector 1 through the control socket; returns the session."""
    session = await csms.wait_for_charge_point(CP_ID, timeout=10)
    for connector in (1, 2):
        await session.wait_for(
            "StatusNotification",
            lambda p, c=connector: p["connectorId"] == c and p["status"] == "Available",
        )
    assert (await child.ctl("plug", connector=1))["ok"]
    assert (await child.ctl("tag", connector=1, id_tag=TAG))["ok"]
    await session.wait_for("StartTransaction", lambda p: p["connectorId"] == 1)
    await session.wait_for(
        "StatusNotification", lambda p: p["connectorId"] == 1 and p["status"] == "Charging"
    )
    return session


# -- the tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [None, WITHOUT_SYSTEMD_PYTHON], ids=["as-installed", "without-systemd-python"]
)
async def test_ready_then_watchdog_then_stopping_in_order(
    csms: CentralSystem, short_dir: Path, notify: NotifySocket, command: list[str] | None
) -> None:
    async with running_hilsim(
        short_dir, csms.url, notify=notify, watchdog_usec=400_000, command=command
    ) as child:
        ready = await notify.expect(lambda n: "READY=1" in n)
        # READY=1 only once the config is loaded and the database and control socket are open.
        assert (short_dir / "hilsim.db").exists()
        assert (short_dir / "ctl.sock").exists()
        await notify.expect(lambda n: "WATCHDOG=1" in n)
        await csms.wait_for_charge_point(CP_ID, timeout=10)
        connected = await notify.expect(
            lambda n: n.assignments.get("STATUS", "").startswith("connected to")
        )
        assert connected.assignments["STATUS"] == (
            f"connected to {csms.url}/{CP_ID} · C1 Available · C2 Available"
        )
        # Pings keep coming at about half of WATCHDOG_USEC.
        first = await notify.expect(lambda n: "WATCHDOG=1" in n)
        second = await notify.expect(lambda n: "WATCHDOG=1" in n)
        assert second.at - first.at < 0.4
        child.signal(signal.SIGTERM)
        stopping = await notify.expect(lambda n: "STOPPING=1" in n)
        assert await child.exit_status() == 0
    order = notify.received
    first_watchdog = next(i for i, n in enumerate(order) if "WATCHDOG=1" in n)
    assert order.index(ready) < first_watchdog < order.index(stopping)
    assert stopping.assignments["STATUS"] == "stopping: ending transactions (Local)"
    # No ping after STOPPING=1: from then on systemd times the stop, not the watchdog.
    assert all("WATCHDOG=1" not in n for n in order[order.index(stopping) :])


async def test_a_blocked_loop_stops_the_watchdog_pings_until_it_runs_again(
    csms: CentralSystem, short_dir: Path, notify: NotifySocket
) -> None:
    block_s = 1.5
    async with running_hilsim(short_dir, csms.url, notify=notify, watchdog_usec=200_000) as child:
        await notify.expect(lambda n: "READY=1" in n)
        before = await notify.expect(lambda n: "WATCHDOG=1" in n)
        again = await notify.expect(lambda n: "WATCHDOG=1" in n)
        assert again.at - before.at < 0.5  # pinging every 0.1 s while the loop runs
        blocking = asyncio.create_task(child.ctl("debug-block-loop", seconds=block_s))
        marker = await notify.expect(
            lambda n: n.assignments.get("STATUS", "").startswith("debug: event loop blocked")
        )
        # The loop is held: nothing at all may arrive for most of the block.
        with pytest.raises(TimeoutError):
            note = await notify.receive(timeout=block_s - 0.4)
            pytest.fail(f"{note.assignments} arrived while the loop was blocked")
        resumed = await notify.expect(lambda n: "WATCHDOG=1" in n, timeout=5)
        assert resumed.at - marker.at >= block_s - 0.05
        answer = await asyncio.wait_for(blocking, 5)
        assert answer["ok"] and answer["result"]["blocked_s"] >= block_s  # type: ignore[index]
        # ... and the pings go on at their pace.
        after = await notify.expect(lambda n: "WATCHDOG=1" in n)
        assert after.at - resumed.at < 0.5
        assert await child.line(r"debug: blocking the event loop for 1\.5 s")
        child.signal(signal.SIGTERM)
        assert await child.exit_status() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_during_a_transaction_stops_it_with_reason_local(
    csms: CentralSystem, short_dir: Path, notify: NotifySocket, sig: int
) -> None:
    async with running_hilsim(short_dir, csms.url, notify=notify, watchdog_usec=2_000_000) as child:
        await notify.expect(lambda n: "READY=1" in n)
        session = await start_transaction(child, csms)
        charging = await notify.expect(lambda n: "C1 Charging" in n.assignments.get("STATUS", ""))
        assert re.fullmatch(
            rf"connected to {re.escape(csms.url)}/{CP_ID} · C1 Charging \d+\.\d kW · C2 Available",
            charging.assignments["STATUS"],
        )
        child.signal(sig)
        stop = await session.wait_for("StopTransaction", timeout=10)
        assert stop["reason"] == "Local"
        stopping = await notify.expect(lambda n: "STOPPING=1" in n)
        assert stopping.assignments["STATUS"] == "stopping: ending transactions (Local)"
        assert await child.exit_status() == 0
    assert not any(record.active for record in csms.ledger.values())


async def test_sigterm_while_the_system_shuts_down_stops_with_reason_reboot(
    csms: CentralSystem, short_dir: Path, notify: NotifySocket
) -> None:
    """The rule (hilsim.daemon.shutdown): `systemctl is-system-running` says "stopping".

    A reboot cannot be staged in a test, so a `systemctl` first on PATH answers as systemd does
    while shutdown.target is queued; hilsim runs it exactly as it runs the real one.
    """
    bin_dir = short_dir / "bin"
    bin_dir.mkdir()
    systemctl = bin_dir / "systemctl"
    systemctl.write_text(
        '#!/bin/sh\nif [ "$1" = is-system-running ]; then echo stopping; exit 1; fi\nexit 1\n'
    )
    systemctl.chmod(0o755)
    async with running_hilsim(
        short_dir, csms.url, notify=notify, watchdog_usec=2_000_000, path_prefix=bin_dir
    ) as child:
        await notify.expect(lambda n: "READY=1" in n)
        session = await start_transaction(child, csms)
        child.signal(signal.SIGTERM)
        stop = await session.wait_for("StopTransaction", timeout=10)
        assert stop["reason"] == "Reboot"
        stopping = await notify.expect(lambda n: "STOPPING=1" in n)
        assert stopping.assignments["STATUS"] == "stopping: ending transactions (Reboot)"
        assert await child.exit_status() == 0
        assert await child.line("the system is shutting down: transactions end with reason Reboot")


async def test_sighup_applies_the_log_level_and_csms_url_and_names_what_needs_a_restart(
    csms: CentralSystem, short_dir: Path, notify: NotifySocket
) -> None:
    async with (
        CentralSystem("127.0.0.1", 0) as other,
        running_hilsim(short_dir, csms.url, notify=notify) as child,
    ):
        await notify.expect(lambda n: "READY=1" in n)
        await csms.wait_for_charge_point(CP_ID, timeout=10)
        edit(
            child.config,
            lambda text: text.replace(csms.url, other.url).replace(
                "max_power_W = 7400", "max_power_W = 3700"
            )
            + '\n[log]\nlevel = "DEBUG"\n',
        )
        mark = len(child.lines)
        child.signal(signal.SIGHUP)
        reloading = await notify.expect(lambda n: "RELOADING=1" in n)
        ready = await notify.expect(lambda n: "READY=1" in n)
        assert ready.at >= reloading.at
        await child.line(r"reload: log\.level = DEBUG \(now\)", after=mark)
        await child.line(
            rf"reload: charge_point\.csms_url = '{re.escape(other.url)}' "
            r"\(at the next connection to the CSMS\)",
            after=mark,
        )
        await child.line(
            r"WARNING .*reload: changed but needs `systemctl restart hilsim` to apply: connector$",
            after=mark,
        )
        # The running connection is kept; when it drops, the new URL is dialled.
        await csms.stop()
        await other.wait_for_charge_point(CP_ID, timeout=15)
        await child.line(r" DEBUG ", after=mark)  # the new level is in force
        child.signal(signal.SIGTERM)
        assert await child.exit_status() == 0


async def test_sighup_with_a_broken_file_keeps_running_on_the_old_config(
    csms: CentralSystem, short_dir: Path, notify: NotifySocket
) -> None:
    async with running_hilsim(short_dir, csms.url, notify=notify) as child:
        await notify.expect(lambda n: "READY=1" in n)
        edit(child.config, lambda text: text + "\n[log]\nlevel = 'LOUD'\n")
        child.signal(signal.SIGHUP)
        await notify.expect(lambda n: "RELOADING=1" in n)
        await notify.expect(lambda n: "READY=1" in n)
        line = await child.line("reload failed")
        assert "running configuration kept" in line
        assert f"{child.config}: log.level: expected one of DEBUG, INFO, WARNING, ERROR" in line
        assert (await child.ctl("status"))["ok"]
        child.signal(signal.SIGTERM)
        assert await child.exit_status() == 0


async def test_without_systemd_python_it_notifies_by_itself_and_says_once_what_is_off(
    csms: CentralSystem, short_dir: Path, notify: NotifySocket
) -> None:
    async with running_hilsim(
        short_dir, csms.url, notify=notify, watchdog_usec=200_000, command=WITHOUT_SYSTEMD_PYTHON
    ) as child:
        await notify.expect(lambda n: "READY=1" in n)
        first = await notify.expect(lambda n: "WATCHDOG=1" in n)
        second = await notify.expect(lambda n: "WATCHDOG=1" in n)
        assert second.at - first.at < 0.3  # every 0.1 s: half of WATCHDOG_USEC
        session = await csms.wait_for_charge_point(CP_ID, timeout=10)
        await session.wait_for("StatusNotification", lambda p: p["connectorId"] == 2)
        assert (await child.ctl("status"))["ok"]
        child.signal(signal.SIGTERM)
        await notify.expect(lambda n: "STOPPING=1" in n)
        assert await child.exit_status() == 0
    said = [line for line in child.lines if "journal entries" in line]
    assert len(said) == 1, child.lines
    assert " INFO " in said[0]  # nothing is broken: a note, not a warning
    assert "without the CONNECTOR, TRANSACTION and OCPP_ACTION fields" in said[0]
    assert "hilsim[systemd]" in said[0] and "python3-systemd" in said[0]


async def test_a_config_error_exits_2_without_ready(
    csms: CentralSystem, short_dir: Path, notify: NotifySocket
) -> None:
    async with running_hilsim(
        short_dir, csms.url, notify=notify, extra_config='\n[log]\nlevel = "LOUD"\n'
    ) as child:
        assert await child.exit_status() == 2
    assert child.lines[-1] == (
        f"hilsim: {child.config}: log.level: expected one of DEBUG, INFO, WARNING, ERROR, "
        "got 'LOUD'"
    )
    assert notify.pending() is None
