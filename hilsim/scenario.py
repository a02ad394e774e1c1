"""`hilsim scenario FILE`: a bench test written down as TOML steps, run against the built-in CSMS.

A tester repeats the same sequences (plug, tag, make the CSMS do something, check what the
charge point said) by hand; a scenario file writes one down so it runs the same way every time,
in CI too (``--junit``). The runner starts its own central system (:class:`CentralSystem` on
127.0.0.1, an ephemeral port) and its own charge point (the real :class:`Service`: the embedded
defaults, mock pins, database and control socket in a temporary directory), waits until the
charge point has booted, then runs the steps in order and stops at the first that fails.

The step vocabulary is in README "Scenario files". A bad file is refused before anything starts,
naming the file, the step, the key and what was expected, as configuration errors are (exit 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import tempfile
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

from hilsim.errors import ConfigError, HilsimError

if TYPE_CHECKING:
    from hilsim.csms.server import CentralSystem
    from hilsim.ocpp.wire import Frame
    from hilsim.service import Service

log = logging.getLogger(__name__)

#: What `hilsim ctl` offers, and which of its arguments each action takes.
CTL_ACTIONS: dict[str, tuple[str, ...]] = {
    "status": (),
    "plug": ("connector",),
    "unplug": ("connector",),
    "clear": ("connector",),
    "tag": ("connector", "id_tag"),
    "fault": ("connector", "error_code"),
    "press": ("pin",),
    "release": ("pin",),
}
DEFAULT_WITHIN_S = 5.0
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_COMPARISONS = frozenset({"min", "max", "not"})


class StepFailed(HilsimError):
    """A step did not get what it expected; the message says what came instead."""


# -- the file ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One ``[[step]]`` table: its kind and its keys, checked when the file is loaded."""

    number: int
    kind: str  # ctl, csms, link, expect, state, wait
    table: dict[str, Any]

    @property
    def label(self) -> str:
        """What the pass/fail line calls this step: its ``name``, else a summary of its keys."""
        if "name" in self.table:
            return str(self.table["name"])
        t = self.table
        if self.kind == "ctl":
            args = [str(t[key]) for key in CTL_ACTIONS[t["ctl"]] if key in t]
            return " ".join(["ctl", t["ctl"], *args])
        if self.kind == "csms":
            payload = json.dumps(t.get("payload", {}), separators=(",", ":"))
            return f"csms {t['csms']} " + (payload if len(payload) <= 80 else payload[:77] + "...")
        if self.kind == "link":
            return f"CSMS {t['link']}"
        if self.kind == "wait":
            return f"wait {t['wait']:g} s"
        within = f" within {t.get('within', DEFAULT_WITHIN_S):g} s"
        if self.kind == "state":
            return f"state {_describe(t['state'])}{within}"
        where = f" {_describe(t['where'])}" if t.get("where") else ""
        return f"expect {t['expect']}{where}{within}"


@dataclass(frozen=True)
class Scenario:
    path: Path
    name: str
    description: str
    id_tags: tuple[str, ...] | None
    steps: tuple[Step, ...]


_STEP_KEYS: dict[str, frozenset[str]] = {
    "ctl": frozenset({"ctl", "connector", "id_tag", "error_code", "pin", "refused", "result"}),
    "csms": frozenset({"csms", "payload", "result", "error", "timeout", "save"}),
    "link": frozenset({"link"}),
    "expect": frozenset({"expect", "where", "within", "save"}),
    "state": frozenset({"state", "within", "save"}),
    "wait": frozenset({"wait"}),
}
_TOP_KEYS = frozenset({"name", "description", "csms", "step"})


def load_scenario(path: Path) -> Scenario:
    """Read and check a scenario file; ConfigError (exit 2) naming the step and key if bad."""
    source = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(source, None, "file not found; expected a TOML scenario file") from None
    except OSError as exc:
        raise ConfigError(source, None, f"cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(source, None, f"expected valid TOML: {exc}") from None
    for key in data:
        if key not in _TOP_KEYS:
            raise ConfigError(source, key, f"unknown key; expected one of {_listed(_TOP_KEYS)}")
    name = _text(source, "name", data.get("name", Path(path).stem))
    description = _text(source, "description", data.get("description", ""))
    id_tags: tuple[str, ...] | None = None
    csms = data.get("csms", {})
    if not isinstance(csms, dict) or set(csms) - {"id_tags"}:
        raise ConfigError(source, "csms", "expected a table with only id_tags")
    if "id_tags" in csms:
        tags = csms["id_tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
            raise ConfigError(source, "csms.id_tags", "expected a list of idTag strings")
        id_tags = tuple(tags)
    tables = data.get("step")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(source, "step", "expected at least one [[step]] table")
    steps = tuple(_step(source, number, table) for number, table in enumerate(tables, 1))
    return Scenario(Path(path), name, description, id_tags, steps)


def _listed(names: frozenset[str] | Mapping[str, Any] | tuple[str, ...]) -> str:
    return ", ".join(sorted(names))


def _text(source: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(source, key, f"expected a string, got {value!r}")
    return value


def _step(source: str, number: int, table: Any) -> Step:
    where = f"step {number}"
    if not isinstance(table, dict):
        raise ConfigError(source, where, "expected a table")
    kinds = [kind for kind in _STEP_KEYS if kind in table]
    if len(kinds) != 1:
        raise ConfigError(
            source, where, f"expected exactly one of {_listed(_STEP_KEYS)}, got {kinds or 'none'}"
        )
    kind = kinds[0]
    for key in table:
        if key != "name" and key not in _STEP_KEYS[kind]:
            allowed = _listed(_STEP_KEYS[kind] | {"name"})
            raise ConfigError(
                source, f"{where}.{key}", f"unknown key for a {kind} step; expected {allowed}"
            )

    def bad(key: str, expected: str) -> ConfigError:
        return ConfigError(source, f"{where}.{key}", f"{expected}, got {table.get(key)!r}")

    if "name" in table and not isinstance(table["name"], str):
        raise bad("name", "expected a string")
    for key in ("within", "timeout", "wait"):
        if key in table and (
            isinstance(table[key], bool)
            or not isinstance(table[key], int | float)
            or not 0 <= table[key] <= 3600
        ):
            raise bad(key, "expected seconds, 0 to 3600")
    for key in ("where", "result", "save", "state"):
        if key in table and not isinstance(table[key], dict):
            raise bad(key, "expected a table")
    for key, path in table.get("save", {}).items():
        if not isinstance(path, str):
            raise ConfigError(source, f"{where}.save.{key}", "expected a dotted field path")
    if kind == "ctl":
        _check_ctl(table, bad)
    elif kind == "csms":
        _check_csms(table, bad)
    elif kind == "link" and table["link"] not in ("down", "up"):
        raise bad("link", 'expected "down" (the CSMS goes away) or "up" (it comes back)')
    elif kind == "expect":
        from hilsim.csms.strict import actions

        if table["expect"] not in actions():
            raise bad("expect", "expected an OCPP 1.6 action a charge point sends")
    elif kind == "state" and not table["state"]:
        raise bad("state", "expected at least one field")
    return Step(number, kind, table)


def _check_ctl(table: dict[str, Any], bad: Callable[[str, str], ConfigError]) -> None:
    action = table["ctl"]
    if action not in CTL_ACTIONS:
        raise bad("ctl", f"expected one of {_listed(CTL_ACTIONS)}")
    for key in CTL_ACTIONS[action]:
        if key not in table and key != "error_code":
            raise bad(key, f"ctl {action} needs {key}")
    for key in ("connector", "id_tag", "error_code", "pin"):
        if key in table and key not in CTL_ACTIONS[action]:
            raise bad(key, f"ctl {action} takes no {key}")
    if "connector" in table and (
        isinstance(table["connector"], bool) or not isinstance(table["connector"], int)
    ):
        raise bad("connector", "expected a connector number")
    for key in ("id_tag", "error_code"):
        if key in table and not isinstance(table[key], str):
            raise bad(key, "expected a string")
    if "refused" in table and not isinstance(table["refused"], bool):
        raise bad("refused", "expected true or false")


def _check_csms(table: dict[str, Any], bad: Callable[[str, str], ConfigError]) -> None:
    from hilsim.csms.console import BadCall, action_named, problems

    try:
        table["csms"] = action_named(str(table["csms"]))
    except BadCall as exc:
        raise bad("csms", str(exc)) from None
    payload = table.setdefault("payload", {})
    if not isinstance(payload, dict):
        raise bad("payload", "expected a table (the CALL payload, camelCase)")
    if not _VARIABLE.search(json.dumps(payload)):  # with ${...} it is checked when it runs
        found = problems(table["csms"], payload)
        if found:
            raise bad("payload", "; ".join(found))
    if "error" in table and not isinstance(table["error"], str):
        raise bad("error", "expected a CALLERROR errorCode string")
    if "error" in table and ("result" in table or "save" in table):
        raise bad("error", "a step expecting a CALLERROR has no result to check or save")


def _describe(fields: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={_shown(value)}" for key, value in fields.items())


def _shown(value: Any) -> str:
    if isinstance(value, dict) and value and set(value) <= _COMPARISONS:
        return " ".join(f"{op} {limit}" for op, limit in value.items())
    return json.dumps(value, separators=(",", ":"))


# -- matching ------------------------------------------------------------------------------------

_MISSING = object()


def field_at(data: Any, path: str) -> Any:
    """The value at a dotted path; a number in a list of objects with "id" picks by id first.

    So ``connectors.1.status`` is connector 1's status in `hilsim ctl status`, and
    ``meterValue.0.sampledValue.0.value`` the first sample of a MeterValues.req.
    """
    node = data
    for part in path.split("."):
        if isinstance(node, dict):
            node = node.get(part, _MISSING)
        elif isinstance(node, list) and re.fullmatch(r"-?\d+", part):
            index = int(part)
            by_id = [item for item in node if isinstance(item, dict) and item.get("id") == index]
            if by_id:
                node = by_id[0]
            elif -len(node) <= index < len(node):
                node = node[index]
            else:
                return _MISSING
        else:
            return _MISSING
        if node is _MISSING:
            return _MISSING
    return node


def mismatch(data: Any, expected: Mapping[str, Any]) -> str | None:
    """Why ``data`` does not have the expected fields (None: it has them all)."""
    for path, want in expected.items():
        have = field_at(data, path)
        if have is _MISSING:
            if isinstance(want, dict) and set(want) == {"not"}:
                continue
            return f"{path} is missing"
        if isinstance(want, dict) and want and set(want) <= _COMPARISONS:
            if "not" in want and have == want["not"]:
                return f"{path} is {json.dumps(have)}, expected anything else"
            if not set(want) & {"min", "max"}:
                continue
            try:
                number = float(have)
            except (TypeError, ValueError):
                return f"{path} is {have!r}, not a number"
            if "min" in want and number < want["min"]:
                return f"{path} is {have!r}, expected at least {want['min']}"
            if "max" in want and number > want["max"]:
                return f"{path} is {have!r}, expected at most {want['max']}"
        elif have != want or isinstance(have, bool) != isinstance(want, bool):
            return f"{path} is {json.dumps(have)}, expected {json.dumps(want)}"
    return None


def substitute(value: Any, saved: Mapping[str, Any]) -> Any:
    """``"${tx}"`` becomes the saved value itself (a number stays one); inside text, its text."""

    def one(text: str) -> Any:
        whole = _VARIABLE.fullmatch(text)
        if whole:
            return lookup(whole.group(1))
        return _VARIABLE.sub(lambda m: str(lookup(m.group(1))), text)

    def lookup(name: str) -> Any:
        if name not in saved:
            known = ", ".join(sorted(saved)) or "none yet"
            raise StepFailed(f"${{{name}}} was not saved by an earlier step (saved: {known})")
        return saved[name]

    if isinstance(value, str):
        return one(value)
    if isinstance(value, dict):
        return {key: substitute(item, saved) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, saved) for item in value]
    return value


# -- running -------------------------------------------------------------------------------------


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
            cp = replace(settings.charge_point, csms_url=central.url)
            # Quick reconnects: a `link up` step should not wait out a minute-long backoff.
            service = Service(replace(settings, charge_point=cp), backoff=Backoff(0.05, 2.0, 0.5))
            run = _Run(central, service)
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
        ids = {
            m.payload.get("connectorId") for m in run.received if m.action == "StatusNotification"
        }
        booted = any(m.action == "BootNotification" for m in run.received)
        return True if booted and ids >= set(range(connectors + 1)) else None

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
        payload = checked(t["csms"], substitute(t["payload"], run.saved))
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
        if value is _MISSING:
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


# -- the report ----------------------------------------------------------------------------------


def junit_xml(results: list[tuple[Scenario, list[Outcome]]]) -> str:
    """A JUnit XML report: one testsuite per scenario, one testcase per step."""
    suites = ElementTree.Element("testsuites")
    for scenario, outcomes in results:
        suite = ElementTree.SubElement(
            suites,
            "testsuite",
            name=scenario.name,
            file=str(scenario.path),
            tests=str(len(outcomes)),
            failures=str(sum(o.status == "fail" for o in outcomes)),
            skipped=str(sum(o.status == "skip" for o in outcomes)),
            errors="0",
            time=f"{sum(o.seconds for o in outcomes):.3f}",
        )
        for outcome in outcomes:
            case = ElementTree.SubElement(
                suite,
                "testcase",
                classname=f"scenario.{scenario.path.stem}",
                name=f"step {outcome.step.number:02d}: {outcome.step.label}",
                time=f"{outcome.seconds:.3f}",
            )
            if outcome.status == "fail":
                failure = ElementTree.SubElement(case, "failure", message=outcome.message)
                failure.text = outcome.message
            elif outcome.status == "skip":
                ElementTree.SubElement(case, "skipped", message="an earlier step failed")
    ElementTree.indent(suites)
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _say(line: str) -> None:
    print(line, flush=True)


async def main(paths: list[Path], junit: Path | None, trace: bool = False) -> int:
    """`hilsim scenario`: 0 when every step of every file passed, 1 when one failed.

    Every file is checked before the first runs: a bad one is ConfigError, exit 2.
    """
    scenarios = [load_scenario(path) for path in paths]
    results = []
    for scenario in scenarios:
        results.append((scenario, await run_scenario(scenario, _say, trace=trace)))
    passed = all(o.status == "pass" for _, outcomes in results for o in outcomes)
    steps = sum(len(outcomes) for _, outcomes in results)
    failed = sum(o.status == "fail" for _, outcomes in results for o in outcomes)
    print(f"{'PASSED' if passed else 'FAILED'}: {len(results)} scenario(s), {steps} step(s), "
          f"{failed} failed", flush=True)  # fmt: skip
    if junit is not None:
        await asyncio.to_thread(junit.write_text, junit_xml(results), encoding="utf-8")
    return 0 if passed else 1
