"""Chaos: charging sessions while the charge point is killed and the CSMS restarted at random.

The scenario behind ``tests/test_chaos.py`` and ``bench/bench_chaos.py``. A real ``hilsim run``
process charges on both connectors, driven through its control socket as ``hilsim ctl`` would.
The built-in CSMS runs in this process and keeps ONE transaction ledger across its restarts (each
new instance takes the old ledger), as a real back office keeps its database.

Each round plugs both connectors, presents a fresh idTag on each, charges, and unplugs; a seeded
random generator decides whether and where the round is interrupted by a SIGKILL of the charge
point (the plug pulled): after plugging, at a random moment while charging, just after unplugging,
or at the worst moments for the outbox: the instant the CSMS receives a StartTransaction, a
MeterValues or a StopTransaction, before it can answer. Meanwhile the CSMS is stopped and started
again at random moments, down for a random while. Those random pauses are the behaviour under
test; everything else waits on a frame, a process or a control-socket answer, never on a clock.

Kills happen only where it is known which sessions have a transaction: each idTag presented is a
transaction that must reach the CSMS exactly once. At the end the ledger is checked against that:
every transaction exactly once, started and stopped once (a StopTransaction sent again after a
kill must say the same), PowerLoss exactly where a kill came before the unplug, meter values in
order and never decreasing, meterStop not below any sample, and each connector's next meterStart
not below its previous meterStop (energy never goes backwards across restarts).

    HILSIM_CHAOS_SEED=1234 python -m bench.chaos --sessions 12     # one run, figures printed
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from hilsim.control import request
from hilsim.csms import CentralSystem, ChargePointSession, TransactionLedger
from hilsim.errors import ControlError
from hilsim.ocpp.wire import CALL, Frame
from hilsim.store import Store
from hilsim.stored_keys import load_configuration

from bench.harness import hilsim_command, write_config

SEED_VARIABLE = "HILSIM_CHAOS_SEED"
#: meterStop is whole Wh (OCPP 1.6); samples carry one decimal. Rounding may put meterStop up to
#: half a Wh under the sample before it, which is not energy going backwards.
ROUNDING_WH = 0.5
#: Where a round may be interrupted by a SIGKILL, and how often each is drawn.
KILLS = {
    "none": 3,
    "after plug": 1,
    "while charging": 2,
    "after unplug": 1,
    "at StartTransaction": 2,
    "at MeterValues": 1,
    "at StopTransaction": 2,
}
WAIT_S = 60.0  # the longest any single step may take (a CSMS outage plus the backoff after it)
KEYS = {
    "MeterValueSampleInterval": "1",  # samples every second: something to lose at every moment
    "AllowOfflineTxForUnknownId": "true",  # fresh idTags start while the CSMS is down, too
}


def seed_from_environment() -> int:
    text = os.environ.get(SEED_VARIABLE)
    return int(text) if text else random.SystemRandom().randrange(2**32)


@dataclass
class Session:
    """One idTag presented: one transaction the CSMS must end up holding exactly once."""

    tag: str
    connector: int
    unplugged: bool = False
    killed_before_unplug: bool = False
    killed_after_unplug: bool = False

    def reasons(self) -> set[str]:
        """The stop reasons this session may end with."""
        if self.killed_before_unplug:
            return {"PowerLoss"}
        if self.killed_after_unplug:
            return {"EVDisconnected", "PowerLoss"}  # the stop recorded before the kill, or not
        return {"EVDisconnected"}


@dataclass
class ChaosReport:
    seed: int
    sessions: int
    rounds: int
    kills: Counter[str]
    csms_restarts: int
    reconnects: int
    messages: int
    transaction_messages: int
    samples: int
    repeated_starts: int
    repeated_stops: int
    repeated_samples: int
    power_loss_stops: int
    rounded_below: int  # meterStop whole Wh, under the last sample's decimals by rounding
    losses: int
    seconds: float
    slowest_round: tuple[float, str]
    longest_outage: float
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        kills = ", ".join(f"{n} {kind}" for kind, n in sorted(self.kills.items())) or "none"
        return [
            f"chaos seed {self.seed} ({SEED_VARIABLE}={self.seed} repeats the decisions)",
            f"  sessions (transactions started): {self.sessions} in {self.rounds} rounds, "
            f"{self.seconds:.1f} s (slowest round {self.slowest_round[0]:.1f} s, "
            f"{self.slowest_round[1]})",
            f"  charge point killed (SIGKILL): {sum(self.kills.values())} ({kills})",
            f"  CSMS restarts: {self.csms_restarts} (longest outage until the charge point "
            f"was back: {self.longest_outage:.1f} s); reconnects: {self.reconnects}",
            f"  messages from the charge point: {self.messages} "
            f"({self.transaction_messages} transaction messages, {self.samples} samples)",
            f"  sent again after a kill or restart: {self.repeated_starts} StartTransaction, "
            f"{self.repeated_stops} StopTransaction, {self.repeated_samples} MeterValue",
            f"  stopped with PowerLoss: {self.power_loss_stops}",
            f"  meterStop rounded to whole Wh below the last sample (< {ROUNDING_WH} Wh): "
            f"{self.rounded_below}",
            f"  losses: {self.losses}",
            *(f"  PROBLEM: {problem}" for problem in self.problems),
        ]


@dataclass(frozen=True, slots=True)
class Received:
    action: str
    payload: dict[str, Any]


class Observer:
    """Every CALL the charge point sends, across CSMS restarts; wakes waiters on every frame.

    Frames the CSMS sends wake waiters too: a CALLRESULT leaves only once the ledger holds what
    it answers, so a predicate over the ledger is true by the time it is re-checked.
    """

    def __init__(self) -> None:
        self.calls: list[Received] = []
        self.sessions: list[ChargePointSession] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._trigger: Callable[[Received], bool] | None = None
        self._on_trigger: Callable[[], None] | None = None

    def listener(self, csms: CentralSystem) -> Callable[[str, Frame], None]:
        def on_frame(charge_point_id: str, frame: Frame) -> None:
            if not frame.sent:
                msg = frame.parsed()
                if msg and msg[0] == CALL and len(msg) == 4 and isinstance(msg[3], dict):
                    call = Received(str(msg[2]), msg[3])
                    self.calls.append(call)
                    session = csms.sessions.get(charge_point_id)
                    if session is not None and session not in self.sessions:
                        self.sessions.append(session)
                    if self._trigger is not None and self._trigger(call):
                        action, self._trigger = self._on_trigger, None
                        assert action is not None
                        action()  # before the CSMS has answered: the answer is never read
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._waiters.clear()

        return on_frame

    def arm(self, trigger: Callable[[Received], bool], action: Callable[[], None]) -> None:
        self._trigger, self._on_trigger = trigger, action

    async def until(
        self, what: str, predicate: Callable[[], bool], timeout: float = WAIT_S
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
            except TimeoutError:
                last = "\n    ".join(
                    f"{c.action} {json.dumps(c.payload)[:150]}" for c in self.calls[-12:]
                )
                raise TimeoutError(
                    f"chaos: no {what} within {timeout:g} s; the last CALLs:\n    {last}"
                ) from None

    def mark(self) -> int:
        return len(self.calls)

    def since(self, mark: int) -> list[Received]:
        return self.calls[mark:]


class ChargePointProcess:
    """``hilsim run``: started, killed with SIGKILL, started again on the same files."""

    def __init__(self, config: Path, log: TextIO) -> None:
        self.config = config
        self.log = log
        self.process: asyncio.subprocess.Process | None = None
        self.killed = asyncio.Event()

    async def start(self) -> None:
        self.killed.clear()
        self.process = await asyncio.create_subprocess_exec(
            *hilsim_command("--log-level", "WARNING", "run", "--config", str(self.config)),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
        )

    def kill(self) -> None:
        """The plug pulled: no chance to write or say anything more."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.killed.set()

    async def reap(self) -> None:
        assert self.process is not None
        await self.process.wait()

    async def stop(self) -> int | None:
        process = self.process
        if process is None or process.returncode is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise


async def preset_keys(database: Path, values: dict[str, str]) -> None:
    """OCPP keys in the database before the first start, as ``hilsim config set`` does."""
    async with await Store.open(database) as store:
        keys = await load_configuration(store)
        for name, text in values.items():
            status, spec, value = keys.change(name, text)
            if spec is None or value is None:
                raise RuntimeError(f"chaos: cannot preset {name}={text}: {status}")
            await store.save_key(spec.name, spec.format(value))


class Chaos:
    def __init__(self, directory: Path, sessions: int, seed: int, say: Callable[[str], None]):
        self.directory = directory
        self.wanted = sessions
        self.seed = seed
        self.say = say
        self.rng = random.Random(f"{seed}:rounds")
        self.csms_rng = random.Random(f"{seed}:csms")
        self.tags = [f"CHAOS{seed % 1000:03d}-{i:03d}" for i in range(sessions + 2)]
        self.observer = Observer()
        self.ledger = TransactionLedger()
        self.sessions: list[Session] = []
        self.kills: Counter[str] = Counter()
        self.csms_restarts = 0
        self.rounds = 0
        self.slowest = (0.0, "")  # the longest round and its kind of kill, for the figures
        self.longest_outage = 0.0  # from a CSMS stop to the charge point's next boot
        self.port = 0
        self.csms: CentralSystem | None = None
        self.finishing = False
        self._socket = directory / "ctl.sock"

    # -- the CSMS, restarted at random -----------------------------------------------------------

    async def start_csms(self) -> None:
        csms = CentralSystem("127.0.0.1", self.port, id_tags=self.tags)
        csms.on_frame = self.observer.listener(csms)
        csms.ledger = self.ledger  # one ledger across restarts, as a back office's database
        await csms.start()
        self.port = csms.port
        self.csms = csms

    async def restart_csms_at_random(self) -> None:
        """Until the sessions are done: down at a random moment, for a random while.

        The next restart is drawn once the charge point is back: restarts faster than its
        backoff would only measure the backoff (it doubles with every refused attempt).
        """
        while not self.finishing:
            # The random pauses are the behaviour under test: when, and for how long.
            await asyncio.sleep(self.csms_rng.uniform(0.5, 4.0))
            if self.finishing:
                return
            assert self.csms is not None
            await self.csms.stop()
            self.csms = None
            down = time.monotonic()
            await asyncio.sleep(self.csms_rng.uniform(0.0, 1.5))
            mark = self.observer.mark()
            await self.start_csms()
            self.csms_restarts += 1
            await self.booted(mark)
            self.longest_outage = max(self.longest_outage, time.monotonic() - down)

    # -- the charge point ------------------------------------------------------------------------

    async def ctl(self, cmd: str, connector: int, **extra: Any) -> None:
        answer = await request(self._socket, {"cmd": cmd, "connector": connector, **extra})
        if not answer.get("ok"):
            raise RuntimeError(f"chaos: ctl {cmd} {connector} refused: {answer}")

    async def booted(self, mark: int) -> None:
        await self.observer.until(
            "BootNotification",
            lambda: any(c.action == "BootNotification" for c in self.observer.since(mark)),
        )

    async def kill_and_restart(self, kind: str, cp: ChargePointProcess, already: bool) -> None:
        """SIGKILL (unless a trigger already did), note who it hit, start again, wait for boot."""
        if not already:
            cp.kill()
        await cp.reap()
        self.kills[kind] += 1
        # Which stops had reached the CSMS before the kill: those are settled either way.
        stopped = {
            self._tag_of(c.payload.get("transactionId"))
            for c in self.observer.calls
            if c.action == "StopTransaction"
        }
        for session in self.sessions:
            if session.killed_before_unplug or session.tag in stopped:
                continue
            if session.unplugged:
                session.killed_after_unplug = True  # its stop recorded before the kill, or not
            else:
                session.killed_before_unplug = True
        mark = self.observer.mark()
        await cp.start()
        await self.booted(mark)

    def _open(self) -> list[Session]:
        """Sessions whose transaction is not over yet (no kill, no unplug)."""
        return [
            s
            for s in self.sessions
            if not (s.unplugged or s.killed_before_unplug or s.killed_after_unplug)
        ]

    async def charging(self, connector: int, mark: int) -> None:
        def seen() -> bool:
            return any(
                c.action == "StatusNotification"
                and c.payload.get("connectorId") == connector
                and c.payload.get("status") == "Charging"
                for c in self.observer.since(mark)
            )

        await self.observer.until(f"Charging on connector {connector}", seen)

    def _tag_of(self, transaction_id: Any) -> str | None:
        record = self.ledger.get(transaction_id) if isinstance(transaction_id, int) else None
        return record.id_tag if record is not None else None

    async def kill_at(
        self, kind: str, cp: ChargePointProcess, trigger: Callable[[Received], bool], act: Any
    ) -> None:
        """Arm a kill for the instant the CSMS receives a frame, then do what sends it."""
        self.observer.arm(trigger, cp.kill)
        try:
            await act
        except ControlError:
            if not cp.killed.is_set():
                raise  # the kill came before the control socket's answer: that is fine
        await asyncio.wait_for(cp.killed.wait(), WAIT_S)
        await self.kill_and_restart(kind, cp, already=True)

    async def round(self, cp: ChargePointProcess) -> str:
        """One round on both connectors; returns the kind of kill drawn for it."""
        self.rounds += 1
        kind = self.rng.choices(list(KILLS), weights=list(KILLS.values()))[0]
        victim = self.rng.choice((1, 2))
        await self._round(cp, kind, victim)
        return kind

    async def _round(self, cp: ChargePointProcess, kind: str, victim: int) -> None:
        for connector in (1, 2):
            await self.ctl("plug", connector)
        if kind == "after plug":
            await asyncio.sleep(self.rng.uniform(0.0, 0.3))  # the random moment under test
            await self.kill_and_restart(kind, cp, already=False)
            return
        for connector in (1, 2):
            session = Session(self.tags[len(self.sessions)], connector)
            if kind == "at StartTransaction" and connector == victim:
                self.sessions.append(session)  # the CSMS sees its StartTransaction: it started

                def is_start(call: Received, tag: str = session.tag) -> bool:
                    return call.action == "StartTransaction" and call.payload.get("idTag") == tag

                await self.kill_at(
                    kind, cp, is_start, self.ctl("tag", connector, id_tag=session.tag)
                )
                return
            mark = self.observer.mark()
            await self.ctl("tag", connector, id_tag=session.tag)
            await self.charging(connector, mark)
            self.sessions.append(session)
        current = {s.connector: s for s in self.sessions[-2:]}
        if kind == "at MeterValues":
            tag = current[victim].tag

            def is_sample(call: Received) -> bool:
                return (
                    call.action == "MeterValues"
                    and self._tag_of(call.payload.get("transactionId")) == tag
                )

            await self.kill_at(kind, cp, is_sample, asyncio.sleep(0))
            return
        # Charging for a random while: how many samples there are to lose is under test.
        await asyncio.sleep(self.rng.uniform(1.0, 4.0))
        if kind == "while charging":
            await self.kill_and_restart(kind, cp, already=False)
            return
        for connector in (1, 2):
            session = current[connector]
            if kind == "at StopTransaction" and connector == victim:
                session.unplugged = True

                def is_stop(call: Received, tag: str = session.tag) -> bool:
                    return (
                        call.action == "StopTransaction"
                        and self._tag_of(call.payload.get("transactionId")) == tag
                    )

                await self.kill_at(kind, cp, is_stop, self.ctl("unplug", connector))
                return
            await self.ctl("unplug", connector)
            session.unplugged = True
        if kind == "after unplug":
            await asyncio.sleep(self.rng.uniform(0.0, 0.2))  # the stop recorded, or not yet
            await self.kill_and_restart(kind, cp, already=False)

    async def drained(self) -> None:
        """Every session's transaction stopped in the ledger: the outbox has nothing left."""

        def done() -> bool:
            stopped = {r.id_tag for r in self.ledger.values() if r.meter_stop is not None}
            return all(s.tag in stopped for s in self.sessions)

        await self.observer.until("StopTransaction of every session", done, timeout=2 * WAIT_S)

    async def run(self) -> ChaosReport:
        started = time.monotonic()
        await self.start_csms()
        config = write_config(self.directory, f"ws://127.0.0.1:{self.port}")
        await preset_keys(self.directory / "hilsim.db", KEYS)
        with (self.directory / "hilsim.log").open("a") as log:
            cp = ChargePointProcess(config, log)
            mark = self.observer.mark()
            await cp.start()
            restarts: asyncio.Task[None] | None = None
            try:
                await self.booted(mark)
                restarts = asyncio.create_task(self.restart_csms_at_random())
                while len(self.sessions) < self.wanted:
                    began = time.monotonic()
                    kind = await self.round(cp)
                    took = time.monotonic() - began
                    self.slowest = max(self.slowest, (round(took, 1), kind))
                    if restarts.done():
                        restarts.result()  # a failed restart is the test's failure
                for session in self._open():
                    await self.ctl("unplug", session.connector)
                    session.unplugged = True
                self.finishing = True
                await restarts
                await self.drained()
                status = await cp.stop()
                if status != 0:
                    raise RuntimeError(f"chaos: hilsim run exited with {status} on SIGTERM")
            finally:
                self.finishing = True
                if restarts is not None and not restarts.done():
                    restarts.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await restarts
                if cp.process is not None and cp.process.returncode is None:
                    cp.process.kill()
                    await cp.process.wait()
                if self.csms is not None:
                    await self.csms.stop()
        return self.report(time.monotonic() - started)

    # -- the ledger, checked -----------------------------------------------------------------------

    def report(self, seconds: float) -> ChaosReport:
        problems: list[str] = []
        calls = self.observer.calls
        by_tag: dict[str, list[Any]] = defaultdict(list)
        for record in self.ledger.values():
            by_tag[record.id_tag].append(record)
        known = {s.tag for s in self.sessions}
        losses = 0
        for session in self.sessions:
            records = by_tag.get(session.tag, [])
            if not records:
                losses += 1
                problems.append(f"{session.tag} (connector {session.connector}): lost")
                continue
            if len(records) > 1:
                problems.append(f"{session.tag}: {len(records)} transactions, duplicated")
            record = records[0]
            if record.connector_id != session.connector:
                problems.append(f"{session.tag}: on connector {record.connector_id}")
            if record.meter_stop is None:
                losses += 1
                problems.append(f"{session.tag}: transaction {record.transaction_id} never stopped")
            elif record.reason not in session.reasons():
                problems.append(
                    f"{session.tag}: stopped with {record.reason}, expected one of "
                    f"{sorted(session.reasons())}"
                )
        for tag in by_tag.keys() - known:
            problems.append(f"{tag}: a transaction nobody started")
        # StopTransaction sent again after a kill must say the same thing again.
        stops: dict[Any, set[str]] = defaultdict(set)
        stop_count: Counter[Any] = Counter()
        for call in calls:
            if call.action == "StopTransaction":
                stops[call.payload.get("transactionId")].add(
                    json.dumps(call.payload, sort_keys=True)
                )
                stop_count[call.payload.get("transactionId")] += 1
        for transaction_id, texts in stops.items():
            if len(texts) > 1:
                problems.append(f"transaction {transaction_id}: different StopTransactions {texts}")
        repeated_samples = 0
        samples = 0
        rounded_below = 0
        for record in self.ledger.values():
            seen: dict[str, str] = {}
            energies: list[float] = []
            stamps: list[str] = []
            for meter_value in record.meter_values:
                text = json.dumps(meter_value, sort_keys=True)
                stamp = str(meter_value.get("timestamp", ""))
                if stamp in seen:
                    repeated_samples += 1
                    if seen[stamp] != text:
                        problems.append(
                            f"transaction {record.transaction_id}: two samples at {stamp}"
                        )
                    continue
                seen[stamp] = text
                stamps.append(stamp)
                for sampled in meter_value.get("sampledValue", []):
                    measurand = sampled.get("measurand", "Energy.Active.Import.Register")
                    if measurand == "Energy.Active.Import.Register" and "phase" not in sampled:
                        energies.append(float(sampled["value"]))
            samples += len(energies)
            tx = record.transaction_id
            if stamps != sorted(stamps):
                problems.append(f"transaction {tx}: samples out of order")
            if any(b < a for a, b in itertools.pairwise(energies)):
                problems.append(f"transaction {tx}: energy decreases within it {energies}")
            if energies and record.meter_start > energies[0] + ROUNDING_WH:
                problems.append(
                    f"transaction {tx}: meterStart {record.meter_start} > {energies[0]}"
                )
            if (
                energies
                and record.meter_stop is not None
                and record.meter_stop + ROUNDING_WH < max(energies)
            ):
                problems.append(
                    f"transaction {tx}: meterStop {record.meter_stop} < sample {max(energies)}"
                )
            elif energies and record.meter_stop is not None and record.meter_stop < max(energies):
                rounded_below += 1
        # Energy never goes backwards across transactions (and restarts) on one connector.
        for connector in (1, 2):
            records = sorted(
                (r for r in self.ledger.values() if r.connector_id == connector),
                key=lambda r: r.transaction_id,
            )
            for before, after in itertools.pairwise(records):
                if before.meter_stop is not None and after.meter_start < before.meter_stop:
                    problems.append(
                        f"connector {connector}: transaction {after.transaction_id} starts at "
                        f"{after.meter_start} Wh, below {before.meter_stop} Wh where "
                        f"{before.transaction_id} stopped"
                    )
        for session in self.observer.sessions:
            problems.extend(f"schema: {v}" for v in session.violations)
        actions = Counter(call.action for call in calls)
        return ChaosReport(
            seed=self.seed,
            sessions=len(self.sessions),
            rounds=self.rounds,
            kills=self.kills,
            csms_restarts=self.csms_restarts,
            reconnects=actions["BootNotification"] - 1,
            messages=len(calls),
            transaction_messages=sum(
                actions[a] for a in ("StartTransaction", "StopTransaction", "MeterValues")
            ),
            samples=samples,
            repeated_starts=self.ledger.repeated_starts,
            repeated_stops=sum(n - 1 for n in stop_count.values()),
            repeated_samples=repeated_samples,
            power_loss_stops=sum(1 for r in self.ledger.values() if r.reason == "PowerLoss"),
            rounded_below=rounded_below,
            losses=losses,
            seconds=seconds,
            slowest_round=self.slowest,
            longest_outage=self.longest_outage,
            problems=problems,
        )


async def run_chaos(
    sessions: int = 12, seed: int | None = None, say: Callable[[str], None] = print
) -> ChaosReport:
    """One chaos run in a scratch directory; ``say`` hears the seed first, then the figures."""
    seed = seed_from_environment() if seed is None else seed
    say(f"chaos: seed {seed} ({SEED_VARIABLE}={seed} to repeat), {sessions} sessions")
    with tempfile.TemporaryDirectory(prefix="hs-chaos-", dir="/tmp") as scratch:
        directory = Path(scratch)
        try:
            report = await Chaos(directory, sessions, seed, say).run()
        except BaseException:
            log = (
                (directory / "hilsim.log").read_text(errors="replace")
                if (directory / "hilsim.log").exists()
                else ""
            )
            say("chaos: hilsim run's log (tail):\n" + "\n".join(log.splitlines()[-40:]))
            raise
    for line in report.lines():
        say(line)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=12)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    report = asyncio.run(run_chaos(args.sessions, args.seed))
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
