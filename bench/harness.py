"""What the benchmarks share: processes to start and watch, and the numbers to read off them.

Every figure is measured across process boundaries, as on a real bench: the CSMS (`bench.peer`)
runs in its own process so that its CPU is never counted against the charge point, and the
charge point under test (``hilsim run``, a service hosted by a benchmark, or the bare
`websockets` + `json` baseline in `bench.bare`) runs in another. Times that cross processes are
``time.monotonic_ns()`` readings: CLOCK_MONOTONIC is one clock for the whole machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

CP_ID = "BENCH-CP"
BARE_ID = "BARE-CP"
TAG = "04A2B3C4"
ROOT = Path(__file__).resolve().parent.parent

#: The name of the bare baseline in every table row.
BARE = "bare websockets + json"


# -- numbers ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100), nearest rank: a value that was actually observed."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def cpu_seconds(pid: int) -> float:
    """CPU (user + system) a process has used so far, all its threads included.

    The per-thread scheduler counters are nanosecond-exact; /proc/PID/stat only counts clock
    ticks (10 ms), too coarse for a short window of a nearly idle process. Threads that already
    ended are only in /proc/PID/stat, so the larger of the two readings wins.
    """
    ticks = _stat_cpu_seconds(pid)
    exact = 0.0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                exact += int((task / "schedstat").read_text().split()[0]) / 1e9
    except OSError:
        return ticks
    return max(exact, ticks)


def _stat_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # after the ")" of comm: state is field 3, utime 14 and stime 15 (1-based in proc(5))
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmHWM for process {pid}")


def pinned() -> bool:
    """Whether this process was confined to a single CPU (``taskset -c 0``)."""
    return hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) == 1


def leave_the_charge_points_core() -> None:
    """Move a load generator off the one core the charge point was pinned to, if there is another.

    Under ``taskset -c 0`` every child inherits the single core. The CSMS and the flood generator
    are not part of the small board being approximated, so they step aside; on a one-core
    machine they stay and share it.
    """
    if not hasattr(os, "sched_setaffinity") or not pinned():
        return
    mine = os.sched_getaffinity(0)
    others = set(range(os.cpu_count() or 1)) - mine
    if others:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, others)


# -- files -----------------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A short directory: Unix socket paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="hsb-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_config(
    directory: Path,
    csms_url: str,
    *,
    connectors: int = 2,
    plug_pin: int | None = None,
    ocpp_version: str = "1.6",
    charge_point_id: str = CP_ID,
) -> Path:
    """A hilsim configuration file for the benchmarks: mock GPIO, files in ``directory``.

    ``plug_pin``: connector 1 gets a plug button on that (mock) pin, without debounce (so that
    presses can follow each other closely; the first edge is reported at once either way).
    """
    tables = "\n".join(
        f"[[connector]]\nid = {i}\nvoltage_V = 230.0\nmax_power_W = {11000 if i == 1 else 7400}\n"
        + (f"[connector.gpio]\nplug = {plug_pin}\n" if i == 1 and plug_pin is not None else "")
        for i in range(1, connectors + 1)
    )
    debounce = "debounce_ms = 0\n" if plug_pin is not None else ""
    version_line = f'ocpp_version = "{ocpp_version}"\n' if ocpp_version != "1.6" else ""
    text = f"""\
[charge_point]
id = "{charge_point_id}"
csms_url = "{csms_url}"
vendor = "hilsim"
model = "bench"
{version_line}
{tables}
[storage]
database = "{directory / "hilsim.db"}"

[control]
socket = "{directory / "ctl.sock"}"

[gpio]
backend = "mock"
{debounce}"""
    path = directory / "hilsim.toml"
    path.write_text(text)
    return path


def hilsim_command(*args: str) -> list[str]:
    """``hilsim ARGS`` with the console script installed beside this interpreter."""
    script = Path(sys.executable).parent / "hilsim"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "hilsim", *args]


def python_command(*args: str) -> list[str]:
    return [sys.executable, *args]


# -- processes -------------------------------------------------------------------------------


class Child:
    """A process that talks in JSON lines on stdout (events) and stdin (commands).

    Lines that are not JSON (a stray print) are kept as ``{"event": "text", "text": ...}``.
    stderr goes to a file, shown when something fails.
    """

    def __init__(
        self, name: str, argv: list[str], log_dir: Path, *, stops_at_eof: bool = True
    ) -> None:
        self.name = name
        self.stops_at_eof = stops_at_eof  # closing stdin ends it; else SIGTERM does
        self.argv = argv
        self.log_path = log_dir / f"{name}.stderr"
        self.events: list[dict[str, Any]] = []
        self.process: asyncio.subprocess.Process | None = None
        self._seen = 0  # every event before this index was consumed by expect()
        self._taken: set[int] = set()  # indexes consumed by expect()
        self._arrived = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None
        self._stderr: Any = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, env: dict[str, str] | None = None) -> Child:
        self._stderr = self.log_path.open("wb")
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
            cwd=str(ROOT),
            env={**os.environ, **(env or {})},
            limit=2**22,
        )
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "text", "text": line.decode(errors="replace").rstrip()}
            if not isinstance(event, dict):
                event = {"event": "text", "text": line.decode(errors="replace").rstrip()}
            async with self._arrived:
                self.events.append(event)
                self._arrived.notify_all()
        async with self._arrived:
            self._arrived.notify_all()

    def send(self, **command: Any) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")

    async def expect(
        self,
        event: str,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """The next event of that name (matching ``predicate``) not consumed before."""

        def find() -> dict[str, Any] | None:
            for index in range(self._seen, len(self.events)):
                candidate = self.events[index]
                if index in self._taken or candidate.get("event") != event:
                    continue
                if predicate is None or predicate(candidate):
                    self._taken.add(index)
                    while self._seen in self._taken:
                        self._seen += 1
                    return candidate
            return None

        try:
            async with asyncio.timeout(timeout), self._arrived:
                while (found := find()) is None:
                    if self._reader is not None and self._reader.done():
                        raise RuntimeError(
                            f"{self.name} exited while waiting for {event!r}: {self.tail()}"
                        )
                    await self._arrived.wait()
        except TimeoutError:
            raise TimeoutError(
                f"{self.name}: no {event!r} within {timeout:g} s: {self.tail()}"
            ) from None
        return found

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no stderr)"
        return "\n    ".join(["stderr:", *text[-lines:]]) if text else "(stderr empty)"

    async def stop(self, timeout: float = 10.0) -> int | None:
        """End of input (or SIGTERM), then SIGKILL if it does not go; the exit status."""
        process = self.process
        if process is None:
            return None
        if process.returncode is None and self.stops_at_eof and process.stdin is not None:
            process.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), timeout)
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if process.stdin is not None:
            process.stdin.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)
        if self._stderr is not None:
            self._stderr.close()
        return process.returncode


@contextlib.asynccontextmanager
async def running(*children: Child) -> AsyncIterator[tuple[Child, ...]]:
    """Start children in order; stop them in reverse order whatever happens."""
    started: list[Child] = []
    try:
        for child in children:
            await child.start()
            started.append(child)
        yield children
    finally:
        for child in reversed(started):
            await child.stop()


def peer(
    log_dir: Path, *, report: Sequence[str] = ("BootNotification", "StatusNotification")
) -> Child:
    """The benchmark CSMS (see `bench.peer`)."""
    return Child("csms", python_command("-m", "bench.peer", "--report", ",".join(report)), log_dir)


def hilsim_run(config: Path | str, log_dir: Path) -> Child:
    """The real ``hilsim run`` on a config file; it talks to no stdin, so EOF does not stop it."""
    command = hilsim_command("run", "--config", str(config))
    return Child("hilsim-run", command, log_dir, stops_at_eof=False)


def is_status(event: dict[str, Any], cp: str, connector: int, status: str) -> bool:
    """Whether a CSMS event is that charge point's StatusNotification for that connector."""
    payload = event.get("payload")
    return (
        event.get("cp") == cp
        and event.get("action") == "StatusNotification"
        and isinstance(payload, dict)
        and payload.get("connectorId") == connector
        and payload.get("status") == status
    )


async def peer_url(csms: Child) -> str:
    listening = await csms.expect("listening", timeout=15)
    return f"ws://127.0.0.1:{listening['port']}"
