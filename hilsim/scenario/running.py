"""A scenario run: its own CSMS and charge point, the steps in order, one line per step.

The runner starts its own central system (:class:`CentralSystem` on 127.0.0.1, an ephemeral
port) and its own charge point (the real :class:`Service`: the embedded defaults, mock pins,
database and control socket in a temporary directory), waits until the charge point has booted,
then runs the steps in order and stops at the first that fails. Both are imported when a run
starts, so loading this module (as `hilsim scenario` does) stays cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hilsim.errors import HilsimError
from hilsim.scenario.loading import CTL_ACTIONS, DEFAULT_WITHIN_S, Scenario, Step
from hilsim.scenario.matching import MISSING, StepFailed, field_at, mismatch, substitute

if TYPE_CHECKING:
    from hilsim.csms.server import CentralSystem
    from hilsim.ocpp.wire import Frame
    from hilsim.service import Service

log = logging.getLogger(__name__)


@dataclass
class Received:
    """A CALL from the charge point, and the central system's answer once it was sent."""

    action: str
    payload: dict[str, Any]
    unique_id: str
    answer: Any = None


@dataclass
class Outcome:
    step: Step
    status: str  # pass, fail, skip
    seconds: float = 0.0
    message: str = ""


@dataclass
class _Run:
    """What the steps act on: the charge point, the central system, what it received."""

    central: CentralSystem
    service: Service
    ocpp_version: str = "1.6"
    received: list[Received] = field(default_factory=list)
    mark: int = 0  # expectations look at what arrived since the last action step began
    used: set[int] = field(default_factory=set)
    saved: dict[str, Any] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def on_frame(self, _charge_point_id: str, frame: Frame) -> None:
        msg = frame.parsed()
        if not msg or len(msg) < 3:
            return
        if not frame.sent and msg[0] == 2 and len(msg) == 4 and isinstance(msg[3], dict):
            self.received.append(Received(str(msg[2]), msg[3], str(msg[1])))
        elif frame.sent and msg[0] == 3:
            for item in reversed(self.received):
                if item.unique_id == msg[1]:
                    item.answer = msg[2]
                    break
        self.arrived.set()

    async def until(
        self, check: Callable[[], Any], within: float, failure: Callable[[], str]
    ) -> Any:
        """Wait until ``check()`` returns something other than None, woken by each frame."""
        try:
            async with asyncio.timeout(within):
                while (found := check()) is None:
                    self.arrived.clear()
                    await self.arrived.wait()
        except TimeoutError:
            raise StepFailed(failure()) from None
        return found


async def run_scenario(
    scenario: Scenario, say: Callable[[str], None] = print, *, trace: bool = False
) -> list[Outcome]:
    """Run every step against a fresh CSMS and charge point; one printed line per step."""
    from hilsim.config import embedded_defaults
    from hilsim.csms.server import CentralSystem
    from hilsim.ocpp.transport import Backoff
    from hilsim.service import Service

    say(f"scenario {scenario.name} ({scenario.path})")
    with tempfile.TemporaryDirectory(prefix="hilsim-scenario-") as tmp:
        settings = embedded_defaults(base_dir=Path(tmp))
        tags = scenario.id_tags if scenario.id_tags is not None else settings.csms.id_tags
        central = CentralSystem("127.0.0.1", 0, id_tags=tags, trace=say if trace else None)
        async with central:
            cp = replace(
                settings.charge_point, csms_url=central.url, ocpp_version=scenario.ocpp_version
            )
            # Quick reconnects: a `link up` step should not wait out a minute-long backoff.
            service = Service(replace(settings, charge_point=cp), backoff=Backoff(0.05, 2.0, 0.5))
            run = _Run(central, service, scenario.ocpp_version)
            central.on_frame = run.on_frame
            task = asyncio.create_task(service.run())
            try:
                await _booted(run, task, len(settings.connectors))
                return await _steps(run, scenario, say)
            finally:
                service.stop()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 15)


async def _booted(run: _Run, task: asyncio.Task[None], connectors: int) -> None:
    """The charge point is up: BootNotification and a StatusNotification for every connector."""

    def ready() -> bool | None:
        if task.done():
            task.result()  # its failure, as it is
            raise HilsimError("the charge point stopped before it booted")
        # 2.0.1 names each EVSE, and has no status of the charge point as a whole (connector 0).
        key, first = ("connectorId", 0) if run.ocpp_version == "1.6" else ("evseId", 1)
        ids = {m.payload.get(key) for m in run.received if m.action == "StatusNotification"}
        booted = any(m.action == "BootNotification" for m in run.received)
        return True if booted and ids >= set(range(first, connectors + 1)) else None

    waiter = asyncio.create_task(
        run.until(ready, 30, lambda: "the charge point did not boot within 30 s")
    )
    done, _ = await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        task.result()
        raise HilsimError("the charge point stopped before it booted")
    waiter.result()
    run.mark = len(run.received)


async def _steps(run: _Run, scenario: Scenario, say: Callable[[str], None]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    failed = False
    for step in scenario.steps:
        if failed:
            outcomes.append(Outcome(step, "skip"))
            say(f"SKIP  {step.number:>2}  {step.label}")
            continue
        started = time.monotonic()
        try:
            await _STEP_RUNNERS[step.kind](run, step)
        except StepFailed as exc:
            failed = True
            outcomes.append(Outcome(step, "fail", time.monotonic() - started, str(exc)))
            say(f"FAIL  {step.number:>2}  {step.label}: {exc}")
            continue
        seconds = time.monotonic() - started
        outcomes.append(Outcome(step, "pass", seconds))
        say(f"PASS  {step.number:>2}  {step.label} ({seconds:.2f} s)")
    return outcomes


async def _ctl(run: _Run, step: Step) -> None:
    from hilsim.control import request

    run.mark = len(run.received)
    t = step.table
    payload = {"cmd": t["ctl"], **{k: t[k] for k in CTL_ACTIONS[t["ctl"]] if k in t}}
    answer = await request(run.service.settings.control.socket, substitute(payload, run.saved))
    if t.get("refused", False):
        if answer.get("ok"):
            raise StepFailed(f"accepted ({json.dumps(answer.get('result'))}), expected a refusal")
        return
    if not answer.get("ok"):
        raise StepFailed(f"refused: {answer.get('error')}")
    problem = mismatch(answer.get("result"), t.get("result", {}))
    if problem:
        raise StepFailed(problem)


async def _csms(run: _Run, step: Step) -> None:
    from hilsim.csms.console import BadCall, checked
    from hilsim.csms.errors import CallTimeout, ChargePointCallError, ChargePointDisconnected

    run.mark = len(run.received)
    t = step.table
    try:
        payload = checked(t["csms"], substitute(t["payload"], run.saved), run.ocpp_version)
    except BadCall as exc:
        raise StepFailed(str(exc)) from None
    session = next((s for s in run.central.sessions.values() if not s.closed), None)
    if session is None:
        raise StepFailed("no charge point is connected to the CSMS")
    try:
        answer = await session.call_action(t["csms"], payload, timeout=t.get("timeout", 30))
    except ChargePointCallError as exc:
        if t.get("error") == exc.error_code:
            return
        raise StepFailed(f"CALLERROR {exc.error_code} {exc.description!r}") from None
    except (CallTimeout, ChargePointDisconnected) as exc:
        raise StepFailed(str(exc)) from None
    if "error" in t:
        raise StepFailed(f"CALLRESULT {json.dumps(answer)}, expected CALLERROR {t['error']}")
    problem = mismatch(answer, t.get("result", {}))
    if problem:
        raise StepFailed(f"{problem} (CALLRESULT {json.dumps(answer)})")
    _save(run, step, answer)


def _save(run: _Run, step: Step, data: Any) -> None:
    for name, path in step.table.get("save", {}).items():
        value = field_at(data, path)
        if value is MISSING:
            raise StepFailed(f"save {name}: {path} is missing in {json.dumps(data)[:200]}")
        run.saved[name] = value


async def _link(run: _Run, step: Step) -> None:
    run.mark = len(run.received)
    if step.table["link"] == "down":
        await run.central.stop()
        # The charge point sees the close at once; wait until it says so.
        await _wait_state(run, {"csms.state": {"not": "connected"}}, DEFAULT_WITHIN_S)
    else:
        await run.central.start()  # at the same port: the charge point finds it again


async def _expect(run: _Run, step: Step) -> None:
    t = step.table
    action, where, within = t["expect"], t.get("where", {}), t.get("within", DEFAULT_WITHIN_S)
    wanted = substitute(where, run.saved)
    needs_answer = any(path.startswith("answer.") for path in t.get("save", {}).values())

    def find() -> int | None:
        for index in range(run.mark, len(run.received)):
            item = run.received[index]
            if index in run.used or item.action != action:
                continue
            if mismatch(item.payload, wanted) is None:
                return index
        return None

    def failure() -> str:
        seen = [
            f"{m.action} {json.dumps(m.payload, separators=(',', ':'))[:120]}"
            for m in run.received[run.mark :]
        ]
        shown = "; ".join(seen[-8:]) or "nothing"
        return f"not received within {within:g} s; received since the last action: {shown}"

    index = await run.until(find, within, failure)
    run.used.add(index)
    item = run.received[index]
    if needs_answer:
        await run.until(
            lambda: True if item.answer is not None else None,
            within,
            lambda: f"the CSMS did not answer {action} within {within:g} s",
        )
    _save(run, step, {**item.payload, "answer": item.answer})


async def _state(run: _Run, step: Step) -> None:
    t = step.table
    status = await _wait_state(
        run, substitute(t["state"], run.saved), t.get("within", DEFAULT_WITHIN_S)
    )
    _save(run, step, status)


async def _wait_state(run: _Run, expected: Mapping[str, Any], within: float) -> dict[str, Any]:
    """Poll `hilsim ctl status` until it has the fields (the charge point pushes no events)."""
    from hilsim.control import request

    problem = "no answer"
    try:
        async with asyncio.timeout(within):
            while True:
                answer = await request(run.service.settings.control.socket, {"cmd": "status"})
                status = answer.get("result") or {}
                problem = mismatch(status, expected)
                if problem is None:
                    return dict(status)
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise StepFailed(f"after {within:g} s: {problem}") from None


async def _wait(run: _Run, step: Step) -> None:
    await asyncio.sleep(step.table["wait"])


_STEP_RUNNERS = {
    "ctl": _ctl,
    "csms": _csms,
    "link": _link,
    "expect": _expect,
    "state": _state,
    "wait": _wait,
}
