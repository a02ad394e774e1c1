"""What the database costs an SD card: bytes written and fsyncs per charging hour.

One simulated hour at the default MeterValueSampleInterval (30 s): two connectors, each with one
transaction of an hour, every transaction message recorded, delivered and confirmed as
`hilsim.outbox` does it (`Store.begin_transaction`, `record_sample` with a MeterValues payload of
the charger's shape, `outbox_done` after each delivery, `end_transaction`, the authorization
cache fed from Authorize and StartTransaction). The hour is driven with synthetic timestamps, so
it takes seconds, not an hour.

The baseline runs in the same benchmark: the naive design the issue rules out, a rollback journal
with synchronous=FULL, one commit per sample and the energy register written every second.

A third run measures heartbeats on a live charge point (a real `Service` and the built-in CSMS,
heartbeat interval 1 s): a heartbeat must not write to the database at all.

Each run is a child process under ``strace -f -y`` (Debian package strace), which sees every
write, pwrite64, fsync and fdatasync SQLite makes and the file each goes to; only those to the
database, its -wal, -journal and -shm files and its directory count, and only between two
markers the child writes to /dev/null (so opening and migrating the database is not counted).
Without strace the bytes come from the child's /proc/self/io (``write_bytes`` where the
filesystem accounts it, else ``wchar``) and fsyncs are not measured; the benchmark says so.

The wal-index (-shm) is memory-mapped, so its changes never pass a write call; the kernel still
writes its dirty pages back to the card. They are counted apart: the 4 KiB pages whose content
changed between one sample and the next (the kernel's writeback runs every few seconds, so each
such page costs about one page write).

    python -m bench --only storage            # through the benchmark runner
    python -m bench.bench_storage [--quick]   # this one alone, with its figures printed
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import Row

ROOT = Path(__file__).resolve().parent.parent
MARK = "@@hilsim-storage-bench"
TAG = "04A2B3C4"
SAMPLE_INTERVAL_S = 30  # MeterValueSampleInterval's default
HEARTBEAT_INTERVAL_S = 120  # HeartbeatInterval's default
POWER_W = {1: 11_000.0, 2: 7_400.0}
PAGE = 4096
STRACE_CALLS = "write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync"
NAIVE = "naive: rollback journal, synchronous=FULL, a commit per sample, register every second"


# -- the parent: run each variant in a child, read its trace -------------------------------------


@dataclass(frozen=True, slots=True)
class Measured:
    """What one child wrote to its database between its two markers."""

    bytes_written: float
    fsyncs: float  # nan without strace
    by_file: dict[str, int]
    report: dict[str, Any]  # what the child said about itself (counts, /proc/self/io, -shm)


def run(quick: bool = False) -> list[Row]:
    minutes = 10 if quick else 60
    heartbeats = 3 if quick else 10
    strace = shutil.which("strace")
    if strace is None:
        print(
            "bench_storage: strace not found (apt-get install strace): bytes come from "
            "/proc/self/io and fsyncs are NOT measured",
            file=sys.stderr,
        )
    with tempfile.TemporaryDirectory(prefix="hsb-storage-") as scratch:
        directory = Path(scratch)
        ours = measure("hilsim", directory, minutes, strace)
        naive = measure("naive", directory, minutes, strace)
        live = measure("heartbeats", directory, heartbeats, strace)
    per_hour = 60 / minutes  # quick runs simulate part of the hour and scale it up
    hour = "per charging hour" + (f" ({minutes} min x{per_hour:g})" if per_hour != 1 else "")
    shm_pages = float(ours.report["shm_pages_changed"]) * per_hour
    rows = [
        Row(
            f"storage: database bytes written {hour}",
            ours.bytes_written * per_hour / 1024,
            "KiB",
            baseline=naive.bytes_written * per_hour / 1024,
            baseline_name=NAIVE,
            goal="≤ 0.25x naive",
            met=ours.bytes_written <= 0.25 * naive.bytes_written,
        ),
        Row(
            f"storage: fsyncs {hour}",
            ours.fsyncs * per_hour,
            "",
            baseline=naive.fsyncs * per_hour,
            baseline_name=NAIVE,
            goal="≤ 0.25x naive",
            met=None if math.isnan(ours.fsyncs) else ours.fsyncs <= 0.25 * naive.fsyncs,
        ),
        Row(
            f"storage: -shm (mmapped) pages changed {hour}",
            shm_pages * PAGE / 1024,
            "KiB",
        ),
        Row(
            f"storage: database bytes per heartbeat ({heartbeats} live)",
            live.bytes_written / heartbeats,
            "B",
            goal="0",
            met=live.bytes_written == 0,
        ),
        Row(
            "storage: fsyncs per heartbeat (live)",
            live.fsyncs / heartbeats,
            "",
            goal="0",
            met=None if math.isnan(live.fsyncs) else live.fsyncs == 0,
        ),
    ]
    explain(ours, naive, live, per_hour, heartbeats, strace is not None)
    return rows


def explain(
    ours: Measured,
    naive: Measured,
    live: Measured,
    per_hour: float,
    heartbeats: int,
    traced: bool,
) -> None:
    """The figures as sentences, on stderr (the runner's table goes to stdout)."""
    how = "strace" if traced else f"/proc/self/io {ours.report['io_field']} (no strace)"

    def line(name: str, m: Measured) -> str:
        files = ", ".join(f"{f} {b / 1024:.0f} KiB" for f, b in sorted(m.by_file.items()))
        fsyncs = "not measured" if math.isnan(m.fsyncs) else f"{m.fsyncs * per_hour:.0f}"
        return f"  {name}: {m.bytes_written * per_hour / 1024:.0f} KiB/h, fsyncs/h {fsyncs}" + (
            f" ({files})" if files else ""
        )

    ratio = ours.bytes_written / naive.bytes_written if naive.bytes_written else math.nan
    fsync_ratio = ours.fsyncs / naive.fsyncs if naive.fsyncs else math.nan
    report = ours.report
    print(
        "\n".join(
            [
                f"bench_storage ({how}): {report['messages']} transaction messages, "
                f"MeterValues payload {report['sample_payload_bytes']} B",
                line("hilsim", ours),
                line("naive ", naive),
                f"  ratio hilsim/naive: bytes {ratio:.3f}x, fsyncs {fsync_ratio:.3f}x",
                f"  wal-index pages changed: {report['shm_pages_changed'] * per_hour:.0f}/h "
                "(memory-mapped: written back by the kernel, not by a write call)",
                f"  live heartbeats: {live.bytes_written:.0f} B and "
                f"{'?' if math.isnan(live.fsyncs) else f'{live.fsyncs:.0f}'} fsyncs "
                f"in {heartbeats} heartbeats",
            ]
        ),
        file=sys.stderr,
    )


def measure(variant: str, directory: Path, amount: int, strace: str | None) -> Measured:
    database = directory / f"{variant}.db"
    trace = directory / f"{variant}.trace"
    command = [sys.executable, "-m", "bench.bench_storage", "--child", variant]
    command += ["--database", str(database), "--amount", str(amount)]
    if strace is not None:
        tracing = [strace, "-f", "-qq", "-y", "-s", "64", "-e", f"trace={STRACE_CALLS}"]
        command = [*tracing, "-e", "signal=none", "-o", str(trace), *command]
    done = subprocess.run(
        command,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"bench_storage {variant} child failed ({done.returncode}):\n{done.stderr[-3000:]}"
        )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if strace is None:
        io = report["io"]
        return Measured(float(io[report["io_field"]]), math.nan, {}, report)
    text = trace.read_text(errors="replace")
    if f"{MARK} begin" not in text or f"{MARK} end" not in text:
        raise RuntimeError(f"bench_storage {variant}: strace did not see the child's markers")
    by_file, fsyncs = read_trace(text, database)
    return Measured(float(sum(by_file.values())), float(fsyncs), by_file, report)


_CALL = re.compile(r"^(?P<pid>\d+)\s+(?P<call>\w+)\((?P<fd>\d+)<(?P<path>[^>]*)>(?P<rest>.*)$")
_RESUMED = re.compile(r"^(?P<pid>\d+)\s+<\.\.\. (?P<call>\w+) resumed>(?P<rest>.*)$")
_RESULT = re.compile(r"\)\s+=\s+(?P<value>-?\d+)")


def read_trace(text: str, database: Path) -> tuple[dict[str, int], int]:
    """Bytes per database file and the fsyncs of them, between the child's two markers."""
    files = {str(database) + suffix: database.name + suffix for suffix in ("", "-wal", "-shm")}
    files[str(database) + "-journal"] = database.name + "-journal"
    directory = str(database.parent)
    written: dict[str, int] = {}
    fsyncs = 0
    counting = False
    unfinished: dict[str, tuple[str, str]] = {}  # pid -> (call, path) of an interrupted line
    for line in text.splitlines():
        if MARK in line:
            counting = f"{MARK} begin" in line
            continue
        if (match := _CALL.match(line)) is not None:
            pid, call, path, rest = match["pid"], match["call"], match["path"], match["rest"]
            if rest.endswith("<unfinished ...>"):
                unfinished[pid] = (call, path)
                continue
        elif (match := _RESUMED.match(line)) is not None:
            pid, rest = match["pid"], match["rest"]
            if pid not in unfinished:
                continue
            call, path = unfinished.pop(pid)
        else:
            continue
        if not counting:
            continue
        path = path.removesuffix(" (deleted)")
        result = _RESULT.search(rest)
        if result is None or int(result["value"]) < 0:
            continue
        if call in ("fsync", "fdatasync"):
            if path in files or path == directory:
                fsyncs += 1
        elif path in files:
            name = files[path]
            written[name] = written.get(name, 0) + int(result["value"])
    return written, fsyncs


# -- the child: one variant, between two markers -------------------------------------------------


class Markers:
    """Writes marker lines to /dev/null, where strace sees them and nothing else does."""

    def __init__(self) -> None:
        self._fd = os.open(os.devnull, os.O_WRONLY)
        self.io: dict[str, dict[str, int]] = {}

    def __call__(self, name: str) -> None:
        # The marker's own bytes stay outside the window /proc/self/io is read over.
        if name != "begin":
            self.io[name] = proc_io()
        os.write(self._fd, f"{MARK} {name}".encode())
        if name == "begin":
            self.io[name] = proc_io()


def proc_io() -> dict[str, int]:
    fields: dict[str, int] = {}
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        name, _, value = line.partition(":")
        fields[name.strip()] = int(value)
    return fields


def io_between(marks: Markers, directory: Path) -> tuple[dict[str, int], str]:
    begin, end = marks.io.get("begin", {}), marks.io.get("end", {})
    delta = {key: end[key] - begin.get(key, 0) for key in end}
    return delta, "write_bytes" if write_bytes_accounted(directory) else "wchar"


def write_bytes_accounted(directory: Path) -> bool:
    """Whether this filesystem reports write_bytes (some, e.g. tmpfs or overlays, leave it 0)."""
    before = proc_io().get("write_bytes", 0)
    probe = directory / "write-bytes-probe"
    with probe.open("wb") as file:
        file.write(b"\0" * PAGE)
        file.flush()
        os.fsync(file.fileno())
    probe.unlink()
    return proc_io().get("write_bytes", 0) > before


def hour_of_samples(minutes: int) -> Iterator[tuple[int, datetime]]:
    """Every second of the simulated window, with its synthetic wall-clock time."""
    start = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    for second in range(minutes * 60 + 1):
        yield second, start + timedelta(seconds=second)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def meter_value(energy_Wh: float, power_W: float, stamp: str) -> list[dict[str, Any]]:
    """One MeterValue as the charger sends it with a synthetic meter: register, power, current,
    state of charge."""

    def sampled(value: str, measurand: str, unit: str, location: str = "Outlet") -> dict[str, str]:
        return {
            "value": value,
            "context": "Sample.Periodic",
            "measurand": measurand,
            "location": location,
            "unit": unit,
        }

    return [
        {
            "timestamp": stamp,
            "sampledValue": [
                sampled(f"{energy_Wh:.1f}", "Energy.Active.Import.Register", "Wh"),
                sampled(f"{power_W:.1f}", "Power.Active.Import", "W"),
                sampled(f"{power_W / 230.0:.2f}", "Current.Import", "A"),
                sampled(f"{20 + energy_Wh / 600:.2f}", "SoC", "Percent", "EV"),
            ],
        }
    ]


class ShmWatch:
    """Counts the wal-index pages whose content changed since the last look."""

    def __init__(self, database: Path) -> None:
        self.path = Path(str(database) + "-shm")
        self.pages: list[bytes] = []
        self.changed = 0

    def look(self) -> None:
        try:
            data = self.path.read_bytes()
        except OSError:
            return
        pages = [data[i : i + PAGE] for i in range(0, len(data), PAGE)]
        self.changed += sum(
            1 for i, page in enumerate(pages) if i >= len(self.pages) or self.pages[i] != page
        )
        self.pages = pages


async def child_hilsim(database: Path, minutes: int, mark: Markers) -> dict[str, Any]:
    """hilsim's own store, called as the charger and its outbox call it."""
    from hilsim.store import Store
    from hilsim.stored_keys import load_configuration

    async with await Store.open(database) as store:
        await load_configuration(store)  # a first start seeds the keys: not part of the hour
        shm = ShmWatch(database)
        shm.look()
        mark("begin")
        messages = 0
        next_id = 100
        local: dict[int, int] = {}
        energy = {1: 12_345.0, 2: 67_890.0}
        sample_bytes = 0

        async def deliver() -> None:
            """The CSMS confirms at once: each message leaves the outbox after its answer."""
            nonlocal messages, next_id
            while (head := await store.outbox_head()) is not None:
                if head.action == "StartTransaction":
                    next_id += 1
                    await store.outbox_done(head.seq, transaction_id=next_id)
                else:
                    await store.outbox_done(head.seq)
                messages += 1

        for second, moment in hour_of_samples(minutes):
            stamp = iso(moment)
            if second == 0:
                for c in (1, 2):
                    await store.cache_id_tag(TAG, "Accepted", None, None)  # Authorize.conf
                    start = {
                        "connector_id": c,
                        "id_tag": TAG,
                        "meter_start": round(energy[c]),
                        "timestamp": stamp,
                        "reservation_id": None,
                    }
                    local[c] = await store.begin_transaction(
                        c, TAG, round(energy[c]), stamp, json.dumps(start)
                    )
                    await deliver()
                    await store.cache_id_tag(TAG, "Accepted", None, None)  # its idTagInfo
                continue
            for c in (1, 2):
                energy[c] += POWER_W[c] / 3600  # the meter counts every second: no write
            if second % SAMPLE_INTERVAL_S == 0:
                for c in (1, 2):
                    payload = json.dumps(
                        {
                            "connector_id": c,
                            "meter_value": meter_value(energy[c], POWER_W[c], stamp),
                        }
                    )
                    sample_bytes = len(payload)
                    await store.record_sample(c, energy[c], stamp, local[c], payload)
                await deliver()
                shm.look()
            # A heartbeat every HEARTBEAT_INTERVAL_S touches no table: measured live, apart.
        stamp = iso(moment)
        for c in (1, 2):
            stop = {
                "meter_stop": round(energy[c]),
                "timestamp": stamp,
                "reason": "EVDisconnected",
                "id_tag": None,
            }
            await store.end_transaction(local[c], c, energy[c], stamp, json.dumps(stop))
        await deliver()
        shm.look()
        mark("end")
    return {
        "messages": messages,
        "sample_payload_bytes": sample_bytes,
        "shm_pages_changed": shm.changed,
    }


def child_naive(database: Path, minutes: int, mark: Markers) -> dict[str, Any]:
    """The same tables, written the way the issue rules out."""
    from hilsim.store import MIGRATIONS

    db = sqlite3.connect(database, isolation_level=None)
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute("PRAGMA synchronous=FULL")
    for script in MIGRATIONS:
        db.executescript(script)
    mark("begin")
    messages = 0
    energy = {1: 12_345.0, 2: 67_890.0}
    local: dict[int, int] = {}

    def commit(*statements: tuple[str, tuple[Any, ...]]) -> int:
        db.execute("BEGIN")
        last = 0
        for sql, args in statements:
            last = db.execute(sql, args).lastrowid or 0
        db.execute("COMMIT")
        return last

    def deliver() -> None:
        nonlocal messages
        for (seq,) in db.execute("SELECT seq FROM outbox ORDER BY seq").fetchall():
            commit(("DELETE FROM outbox WHERE seq = ?", (seq,)))
            messages += 1

    enqueue = "INSERT INTO outbox (action, local_id, payload, created_at) VALUES (?, ?, ?, ?)"
    register = (
        "INSERT INTO meter_register (connector_id, energy_Wh, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (connector_id) DO UPDATE SET energy_Wh = excluded.energy_Wh, "
        "updated_at = excluded.updated_at"
    )
    for second, moment in hour_of_samples(minutes):
        stamp = iso(moment)
        if second == 0:
            for c in (1, 2):
                local[c] = commit(
                    (
                        "INSERT INTO charging_transaction (connector_id, id_tag, meter_start_Wh, "
                        "started_at, last_energy_Wh, last_sample_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (c, TAG, round(energy[c]), stamp, energy[c], stamp),
                    )
                )
                commit((enqueue, ("StartTransaction", local[c], "{}", stamp)))
            deliver()
            continue
        for c in (1, 2):
            energy[c] += POWER_W[c] / 3600
            commit((register, (c, energy[c], stamp)))  # every tick
        if second % SAMPLE_INTERVAL_S == 0:
            for c in (1, 2):
                payload = json.dumps(
                    {"connector_id": c, "meter_value": meter_value(energy[c], POWER_W[c], stamp)}
                )
                commit(
                    (
                        "UPDATE charging_transaction SET last_energy_Wh = ?, last_sample_at = ? "
                        "WHERE local_id = ?",
                        (energy[c], stamp, local[c]),
                    ),
                    (enqueue, ("MeterValues", local[c], payload, stamp)),
                )
            deliver()
    for c in (1, 2):
        commit(
            ("UPDATE charging_transaction SET stopped = 1 WHERE local_id = ?", (local[c],)),
            (enqueue, ("StopTransaction", local[c], "{}", stamp)),
        )
    deliver()
    mark("end")
    db.close()
    return {"messages": messages, "sample_payload_bytes": 0, "shm_pages_changed": 0}


async def child_heartbeats(database: Path, count: int, mark: Markers) -> dict[str, Any]:
    """A live charge point and the built-in CSMS asking for a heartbeat every second."""
    from hilsim.config import load_settings
    from hilsim.csms import CentralSystem
    from hilsim.service import Service

    from bench.harness import CP_ID, write_config

    async with CentralSystem("127.0.0.1", 0, heartbeat_interval=1) as csms:
        config = write_config(database.parent, csms.url)
        text = config.read_text().replace(str(database.parent / "hilsim.db"), str(database))
        config.write_text(text)
        service = Service(load_settings(config))
        task = asyncio.create_task(service.run())
        try:
            session = await csms.wait_for_charge_point(CP_ID, timeout=30)
            await session.wait_for("Heartbeat", timeout=10)  # booted, interval adopted
            mark("begin")
            for _ in range(count):
                await session.wait_for("Heartbeat", timeout=10)
            mark("end")
        finally:
            service.stop()
            await asyncio.wait_for(task, 15)
    return {"messages": 0, "sample_payload_bytes": 0, "shm_pages_changed": 0}


CHILDREN: dict[str, Callable[[Path, int, Markers], Any]] = {
    "hilsim": child_hilsim,
    "naive": child_naive,
    "heartbeats": child_heartbeats,
}


def child(variant: str, database: Path, amount: int) -> None:
    mark = Markers()
    outcome = CHILDREN[variant](database, amount, mark)
    if asyncio.iscoroutine(outcome):
        outcome = asyncio.run(outcome)
    io, field = io_between(mark, database.parent)
    print(json.dumps({**outcome, "io": io, "io_field": field}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--database", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--amount", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.database, args.amount)
        return
    for row in run(quick=args.quick):
        base = f" (naive {row.baseline:.1f}, ratio {row.ratio:.3f}x)" if row.ratio else ""
        print(f"{row.figure}: {row.value:.1f} {row.unit}{base}")


if __name__ == "__main__":
    main()
