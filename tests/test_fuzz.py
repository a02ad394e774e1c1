"""Hostile input: whatever a broken or malicious CSMS sends, the charge point answers it as OCPP-J
1.6 says, or ignores what nobody may answer, and carries on over the same connection.

Hypothesis throws frames at one running charge point per test (the real `Service` behind a real
websocket, the built-in CSMS sending them with ``call_raw`` / ``send_raw``). Which answer each
frame deserves is decided by an oracle that does not share code with the charge point: the frame
structure by the rules of OCPP-J 1.6 (4.1.3, 4.2.3), the payload by the `ocpp` library's own
`jsonschema` validation, with two rules of OCPP-J 1.6 the library does not apply: every integer
and number fits in 64 bits (what SQLite stores), and a well-typed value a field does not allow
(outside its enumeration, range or step) is a PropertyConstraintViolation, too few items an
OccurenceConstraintViolation; the library's codes are kept for everything else.

After every example a GetConfiguration must still be answered, on the same connection
(`link.connections` unchanged), and no CALLRESULT or CALLERROR may have left the charge point
that nobody asked for. The frames the charge point answers are read in order from one socket, so
the sentinel's answer arriving proves that any answer to an earlier frame would have arrived too:
nothing here sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import decimal
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallResult, get_validator, validate_payload
from ocpp.v16.enums import Action

from hilsim.csms import ChargePointSession
from hilsim.evse import events
from hilsim.ocpp.client import ChargePointClient
from hilsim.ocpp.validation import library_schema_dir
from hilsim.ocpp.wire import CALL, CALLERROR, CALLRESULT, Frame

from conftest import TAG, Bench

#: The actions the charge point handles, read from its handler marks (not a copy of a list).
#: Every action OCPP 1.6 (with its security extension) defines: one schema file per request.
KNOWN_ACTIONS = frozenset(
    path.stem
    for path in library_schema_dir().glob("*.json")
    if not path.stem.endswith("Response")
)
IMPLEMENTED = frozenset(
    action
    for name in dir(ChargePointClient)
    if (action := getattr(getattr(ChargePointClient, name), "__ocpp_on__", None)) is not None
)
OCPP16_ACTIONS = sorted(action.value for action in Action)
#: The library speaks OCPP-J 2.0 for two codes; 1.6 spells them so (and so does the charge point).
SPELLED_16 = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
}
#: What the charge point may answer a payload with, besides a CALLRESULT (OCPP-J 1.6, 4.2.3).
CODES_16 = frozenset(
    {
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    }
)
#: OCPP-J 1.6, 4.2.3, for violations the library answers otherwise: the violated keyword's code.
CODE_BY_KEYWORD_16 = {
    "minimum": "PropertyConstraintViolation",
    "maximum": "PropertyConstraintViolation",
    "enum": "PropertyConstraintViolation",
    "multipleOf": "PropertyConstraintViolation",
    "minItems": "OccurenceConstraintViolation",
}
#: The three schemas the library reads with exact decimals (so 21.4 is a multiple of 0.1).
DECIMAL_CALLS = frozenset({"SetChargingProfile", "RemoteStartTransaction"})
IGNORED = None  # the oracle's verdict for a frame nobody may answer
RESULT = "CALLRESULT"

EXAMPLES = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,
    database=None,  # nothing written into the working tree; a failure prints its reproducer
)

# -- the oracle ---------------------------------------------------------------------------------


async def expected_answer(text: str) -> str | None:
    """RESULT, the CALLERROR code the frame deserves, or IGNORED."""
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        return IGNORED  # no unique id can be read, so there is nothing to answer
    if not isinstance(frame, list) or not frame or not _is_int(frame[0], CALL):
        return IGNORED  # CALLRESULT and CALLERROR are never answered; unknown types have no id
    if len(frame) < 2 or not isinstance(frame[1], str):
        return IGNORED  # an answer must carry the CALL's unique id, a string
    if len(frame) != 4:
        return "ProtocolError"  # not [2, uniqueId, action, payload]
    _, unique_id, action, payload = frame
    if not isinstance(action, str) or not isinstance(payload, dict):
        return "FormationViolation"  # "not conform the PDU structure"
    if action not in IMPLEMENTED:
        # OCPP-J 1.6: an action it knows but does not support is NotSupported.
        return "NotSupported" if action in KNOWN_ACTIONS else "NotImplemented"
    first = _first_error(action, payload)
    if first is not None and first.validator in CODE_BY_KEYWORD_16:
        return CODE_BY_KEYWORD_16[str(first.validator)]
    try:
        await validate_payload(Call(unique_id, action, payload), "1.6")
    except OCPPError as error:
        return SPELLED_16.get(error.code, error.code)
    return RESULT


def _with_64_bit_bounds(node: Any) -> Any:
    """A copy of a schema in which every integer and number must fit in a signed 64-bit int."""
    if isinstance(node, list):
        return [_with_64_bit_bounds(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        out[key] = _with_64_bit_bounds(value)
        kinds = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        if key == "type" and {"integer", "number"} & set(kinds):
            out["minimum"], out["maximum"] = -(2**63), 2**63 - 1
    return out


def _first_error(action: str, payload: dict[str, Any]) -> Any:
    """jsonschema's first error for the payload, under the library's schema with the bounds."""
    decimals = action in DECIMAL_CALLS
    parse_float = decimal.Decimal if decimals else float
    schema = get_validator(CALL, action, "1.6", parse_float=parse_float).schema
    instance = json.loads(json.dumps(payload), parse_float=parse_float)
    return next(Draft4Validator(_with_64_bit_bounds(schema)).iter_errors(instance), None)


def _is_int(value: Any, wanted: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value == wanted


async def check_result_payload(action: str, payload: Any) -> None:
    """A CALLRESULT must hold a valid response payload (the library's schema)."""
    await validate_payload(CallResult("x", payload, action=action), "1.6")


# -- strategies ---------------------------------------------------------------------------------

# Lone surrogates cannot be sent as a websocket text frame (they are not UTF-8); JSON escapes them.
TEXT = st.characters(exclude_categories=("Cs",))
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(TEXT, max_size=12)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(TEXT, max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
OBJECTS = st.dictionaries(st.text(TEXT, max_size=12), JSON, max_size=5)
UNIQUE_IDS = st.text(TEXT, max_size=40)
NOT_STRINGS = st.none() | st.booleans() | st.integers() | st.lists(st.integers(), max_size=2)
ONE_OF_EACH_TYPE: tuple[Any, ...] = (None, True, 17, 2.5, "text", [], {}, [1, "x"], {"a": 1})

START_OF_SCHEDULE = "2026-11-02T10:00:00Z"
#: One valid payload per action the charge point handles, chosen to change nothing that lasts:
#: the fuzzer mutates them; the unmutated ones must be answered with a CALLRESULT.
VALID: dict[str, dict[str, Any]] = {
    "Authorize": {"idTag": TAG},
    "GetConfiguration": {"key": ["HeartbeatInterval", "NoSuchKey"]},
    "ChangeConfiguration": {"key": "NoSuchKey", "value": "1"},
    "RemoteStopTransaction": {"transactionId": 424242},
    "RemoteStartTransaction": {
        "connectorId": 1,
        "idTag": TAG,
        "chargingProfile": {
            "chargingProfileId": 7,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0, "numberPhases": 3}],
            },
        },
    },
    "SetChargingProfile": {
        "connectorId": 2,
        "csChargingProfiles": {
            "chargingProfileId": 8,
            "stackLevel": 1,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "startSchedule": START_OF_SCHEDULE,
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400.0}],
                "minChargingRate": 1.5,
            },
        },
    },
}
# Handlers other parts of hilsim add; valid ones here change nothing either (no such profile,
# reservation or vendor), so they are fuzzed too where the charge point has them.
for _action, _payload in {
    "ClearChargingProfile": {"id": 999, "connectorId": 1, "stackLevel": 3},
    "GetCompositeSchedule": {"connectorId": 1, "duration": 3600, "chargingRateUnit": "W"},
    "CancelReservation": {"reservationId": 999},
    "DataTransfer": {"vendorId": "org.example.nobody", "messageId": "x", "data": "y"},
    "GetLocalListVersion": {},
}.items():
    if _action in IMPLEMENTED:
        VALID[_action] = _payload
#: Valid payloads of these would start or change something for good: only mutants are sent.
ONLY_MUTANTS = frozenset({"RemoteStartTransaction"})


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place inside a JSON value, the root included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += paths(inner, (*prefix, index))
    return found


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


@st.composite
def mutants(draw: st.DrawFn, action: str) -> dict[str, Any]:
    """A valid payload with up to three things broken: gone, mistyped, too long, or extra."""
    payload = copy.deepcopy(VALID[action])
    low = 1 if action in ONLY_MUTANTS else 0
    for _ in range(draw(st.integers(low, 3))):
        where = draw(st.sampled_from(paths(payload)))
        op = draw(st.sampled_from(["drop", "retype", "long", "extra", "replace"]))
        parent: Any = payload
        for step in where[:-1]:
            parent = parent[step]
        if op == "extra" or not where:
            target = payload if not where else parent[where[-1]]
            if isinstance(target, dict):
                target[draw(st.text(TEXT, min_size=1, max_size=12))] = draw(JSON)
            continue
        last = where[-1]
        if op == "drop":
            del parent[last]
        elif op == "retype":
            old = json_type(parent[last])
            choices = [v for v in ONE_OF_EACH_TYPE if json_type(v) != old]
            parent[last] = copy.deepcopy(draw(st.sampled_from(choices)))  # mutated later on
        elif op == "long":  # beyond every maxLength of OCPP 1.6 (CiString500 is the longest)
            parent[last] = "x" * draw(st.integers(501, 4000))
        else:
            parent[last] = draw(JSON)
    return payload


@st.composite
def calls(draw: st.DrawFn) -> list[Any]:
    """CALL frames with a readable unique id: well-formed, mutated, random, or misshapen."""
    unique_id = draw(UNIQUE_IDS)
    action = draw(
        st.sampled_from(sorted(VALID))
        | st.sampled_from(OCPP16_ACTIONS)
        | st.text(TEXT, max_size=20)
    )
    shape = draw(
        st.sampled_from(["mutant", "mutant", "random", "not an object", "arity", "action"])
    )
    if shape == "mutant" and action in VALID:
        return [CALL, unique_id, action, draw(mutants(action))]
    if shape == "not an object":
        return [CALL, unique_id, action, draw(JSON.filter(lambda v: not isinstance(v, dict)))]
    if shape == "arity":
        extra = draw(st.lists(JSON, max_size=3))
        full = [CALL, unique_id, action, draw(OBJECTS), *extra]
        return full[: draw(st.sampled_from([2, 3] + ([5, 6, 7] if extra else [])))]
    if shape == "action":
        return [CALL, unique_id, draw(NOT_STRINGS), draw(OBJECTS)]
    return [CALL, unique_id, action, draw(OBJECTS)]


def replies(unique_ids: st.SearchStrategy[Any] = UNIQUE_IDS | NOT_STRINGS) -> Any:
    """CALLRESULTs and CALLERRORs, of any arity and content, for whatever unique id."""
    return st.builds(
        lambda kind, uid, rest: [kind, uid, *rest],
        st.sampled_from([CALLRESULT, CALLERROR]),
        unique_ids,
        st.lists(JSON, max_size=4),
    )


UNKNOWN_TYPE_IDS = (
    st.integers().filter(lambda n: n not in (CALL, CALLRESULT, CALLERROR))
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer())
    | st.text(TEXT, max_size=3)
    | st.none()
    | st.booleans()
)
GARBAGE = st.one_of(
    st.text(TEXT, max_size=60),  # not JSON, mostly
    JSON.filter(lambda v: not isinstance(v, list)).map(json.dumps),  # JSON, but no array
    st.just("[]"),
    st.builds(lambda t, rest: json.dumps([t, *rest]), UNKNOWN_TYPE_IDS, st.lists(JSON, max_size=4)),
    replies().map(json.dumps),  # answers nobody asked for
    st.builds(
        lambda uid, rest: json.dumps([CALL, uid, *rest]), NOT_STRINGS, st.lists(JSON, max_size=3)
    ),
    st.just("[2]"),
)


# -- watching what the charge point answers ------------------------------------------------------


@dataclass
class Wire:
    """Every CALLRESULT and CALLERROR the charge point sends, as the CSMS receives them."""

    bench: Bench
    answers: list[list[Any]] = field(default_factory=list)
    sentinels: int = 0

    def __post_init__(self) -> None:
        self.bench.csms.on_frame = self._frame
        link = self.bench.service.link
        assert link is not None
        self.connections = link.connections

    def _frame(self, charge_point_id: str, frame: Frame) -> None:
        if frame.sent:
            return
        msg = frame.parsed()
        if msg and msg[0] in (CALLRESULT, CALLERROR):
            self.answers.append(msg)

    async def answer(self, text: str) -> list[Any]:
        # The charge point answers within milliseconds; a missing answer fails fast.
        return await self.bench.session.call_raw(text, timeout=3)

    async def carries_on(self) -> None:
        """The session answers a GetConfiguration, on the same connection, and said no more."""
        self.sentinels += 1
        unique_id = f"sentinel-{self.sentinels}"
        before = len(self.answers)
        reply = await self.answer(
            json.dumps([CALL, unique_id, "GetConfiguration", {"key": ["HeartbeatInterval"]}])
        )
        assert reply[0] == CALLRESULT and reply[1] == unique_id, reply
        assert reply[2]["configurationKey"][0]["key"] == "HeartbeatInterval"
        assert self.answers[before:] == [reply]  # nothing else came back meanwhile
        link = self.bench.service.link
        assert link is not None and link.connections == self.connections, "it reconnected"
        assert not self.bench.session.closed


@pytest.fixture
def wire(bench: Bench) -> Wire:
    return Wire(bench)


async def send_and_judge(wire: Wire, text: str) -> None:
    """Send one frame; check it got exactly the answer it deserves (or none)."""
    verdict = await expected_answer(text)
    if verdict is IGNORED:
        before = len(wire.answers)
        await wire.bench.session.send_raw(text)
        await wire.carries_on()
        assert len(wire.answers) == before + 1  # the sentinel's, nothing for this frame
        return
    frame = json.loads(text)
    reply = await wire.answer(text)
    assert reply[1] == frame[1]
    if verdict == RESULT:
        assert reply[0] == CALLRESULT, (text[:300], reply)
        assert len(reply) == 3
        await check_result_payload(frame[2], reply[2])
    else:
        assert reply[0] == CALLERROR, (text[:300], reply)
        assert len(reply) == 5, reply
        _, _, code, description, details = reply
        assert (code, text[:300]) == (verdict, text[:300])
        assert code in CODES_16
        assert isinstance(description, str) and len(description) <= 255
        assert isinstance(details, dict)
    await wire.carries_on()


# -- CALLs: each gets its CALLRESULT or the right CALLERROR ---------------------------------------


@settings(EXAMPLES, max_examples=400)
@given(frame=calls())
async def test_every_call_gets_the_answer_ocpp_j_gives_it(wire: Wire, frame: list[Any]) -> None:
    if await expected_answer(json.dumps(frame)) == RESULT:
        # Valid: handled for real. Only the payloads known to change nothing that lasts are sent
        # (a valid Reset or ChangeAvailability would, and is someone else's test).
        assume(frame[2] in VALID and frame[2] not in ONLY_MUTANTS)
    await send_and_judge(wire, json.dumps(frame))


@pytest.mark.parametrize("action", sorted(VALID.keys() - ONLY_MUTANTS))
async def test_the_unmutated_payloads_are_valid_and_answered(wire: Wire, action: str) -> None:
    """The fuzzer's starting points are valid: its mutants test validation, not typos."""
    text = json.dumps([CALL, f"valid-{action}", action, VALID[action]])
    assert await expected_answer(text) == RESULT
    await send_and_judge(wire, text)


async def test_the_oracle_knows_the_codes(wire: Wire) -> None:
    """A few frames whose answer is known by heart, so the oracle itself is checked."""
    known = {
        '[2, "a", "FlyToTheMoon", {}]': "NotImplemented",
        '[2, "b", "ChangeConfiguration", {"key": "HeartbeatInterval"}]': "ProtocolError",
        '[2, "c", "ChangeConfiguration", {"key": 5, "value": "1"}]': "TypeConstraintViolation",
        '[2, "d", "RemoteStopTransaction", {"transactionId": 1, "x": 1}]': "FormationViolation",
        '[2, "e", "GetConfiguration", []]': "FormationViolation",
        '[2, "f", "GetConfiguration"]': "ProtocolError",
        '[2, "g", 17, {}]': "FormationViolation",
        '[2, "h", "Authorize", {"idTag": "' + "x" * 21 + '"}]': "TypeConstraintViolation",
        '[2, "i", "GetConfiguration", {}]': RESULT,
        '[3, "j", {}]': IGNORED,
        '[2, 5, "GetConfiguration", {}]': IGNORED,
    }
    for text, verdict in known.items():
        assert await expected_answer(text) == verdict, text
        await send_and_judge(wire, text)


# -- frames nobody may answer ---------------------------------------------------------------------


@settings(EXAMPLES, max_examples=150)
@given(frames=st.lists(GARBAGE, min_size=1, max_size=5))
async def test_frames_nobody_may_answer_are_ignored(wire: Wire, frames: list[str]) -> None:
    for text in frames:
        await send_and_judge(wire, text)


# -- stray and late answers while the charge point waits for its own -------------------------------


@dataclass(frozen=True)
class Earlier:
    """The unique id of one of the charge point's earlier CALLs, long answered (picked later:
    the strategy must not depend on what the session has seen so far)."""

    index: int


@contextlib.contextmanager
def strays_before_answers(
    session: ChargePointSession, strays: dict[str, list[str]]
) -> Iterator[list[str]]:
    """Have the CSMS send stray frames just before it answers the CALLs named in ``strays``.

    The strays go out on the same socket ahead of the real answer, so the charge point meets
    them while its own CALL is outstanding. Yields the actions they were sent before.
    """
    original = session.route_message
    seen: list[str] = []

    async def route_message(raw: str) -> None:
        msg = json.loads(raw)
        if isinstance(msg, list) and len(msg) == 4 and msg[0] == CALL and msg[2] in strays:
            seen.append(msg[2])
            for text in strays[msg[2]]:
                await session.send_raw(text)
        await original(raw)

    session.route_message = route_message  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        del session.route_message  # the class's own again


@settings(EXAMPLES, max_examples=25)
@given(data=st.data())
async def test_stray_and_late_answers_do_not_confuse_a_waiting_charge_point(
    wire: Wire, data: st.DataObject
) -> None:
    bench = wire.bench
    session = bench.session
    earlier = [m.unique_id for m in session.received]  # answered long ago: late duplicates

    def text(frame: list[Any]) -> str:
        if isinstance(frame[1], Earlier):
            frame = [frame[0], earlier[frame[1].index % len(earlier)], *frame[2:]]
        return json.dumps(frame)

    ids = UNIQUE_IDS | NOT_STRINGS | st.builds(Earlier, st.integers(0, 1000))
    strays = {
        action: [text(f) for f in data.draw(st.lists(replies(ids), min_size=1, max_size=4))]
        for action in ("Authorize", "StartTransaction", "StopTransaction")
    }
    ledger = bench.csms.ledger
    starts_before = len(ledger)
    with strays_before_answers(session, strays) as seen:
        await bench.ctl("plug", 1)
        await bench.status(1, "Preparing")
        await bench.ctl("tag", 1, id_tag=TAG)
        await bench.status(1, "Charging")
        await bench.ctl("unplug", 1)
        stop = await session.wait_for("StopTransaction")
        await bench.status(1, "Available")
    assert seen == ["Authorize", "StartTransaction", "StopTransaction"]
    # Each answered once, the right one taken: one transaction, started and stopped once.
    assert len(ledger) == starts_before + 1 and ledger.repeated_starts == 0
    record = ledger[stop["transactionId"]]
    assert record.reason == "EVDisconnected" and record.meter_stop is not None
    await wire.carries_on()


# -- size and depth --------------------------------------------------------------------------------


async def test_half_a_megabyte_string_gets_its_callerror(wire: Wire) -> None:
    huge = "x" * 500_000
    for action, payload in [
        ("ChangeConfiguration", {"key": "HeartbeatInterval", "value": huge}),
        ("Authorize", {"idTag": huge}),
        ("GetConfiguration", {"key": [huge, huge]}),
    ]:
        await send_and_judge(wire, json.dumps([CALL, f"huge-{action}", action, payload]))


async def test_a_frame_just_under_the_one_mebibyte_limit_is_still_read(wire: Wire) -> None:
    prefix = json.dumps([CALL, "near-limit", "ChangeConfiguration", {"key": "K", "value": ""}])
    filler = 2**20 - len(prefix) - 100  # the client reads frames of up to 1 MiB
    text = prefix.replace('"value": ""', f'"value": "{"y" * filler}"')
    assert 2**20 - 200 < len(text.encode()) <= 2**20
    await send_and_judge(wire, text)


async def test_a_frame_over_one_mebibyte_closes_with_1009_and_the_charge_point_reconnects(
    bench: Bench,
) -> None:
    """Too big to read: websockets closes with 1009 (RFC 6455), the link comes straight back."""
    link = bench.service.link
    assert link is not None
    before = link.connections
    text = json.dumps([CALL, "too-big", "ChangeConfiguration", {"key": "K", "value": "z" * 2**20}])
    await bench.session.send_raw(text)
    again = await bench.csms.wait_for_charge_point(bench.session.charge_point_id, timeout=15)
    assert bench.session.closed
    assert bench.session._connection.websocket.close_code == 1009
    await again.wait_for("BootNotification")
    reply = await again.call_raw(json.dumps([CALL, "after", "GetConfiguration", {}]))
    assert reply[0] == CALLRESULT and link.connections == before + 1
    assert again.violations == []


@pytest.mark.parametrize("depth", [50, 900, 5_000, 100_000])
async def test_deeply_nested_frames_do_not_kill_the_charge_point(wire: Wire, depth: int) -> None:
    """Nesting beyond what the parser or validator can walk is refused, never a crash."""
    deep = "[" * depth + "]" * depth
    text = f'[2, "deep-{depth}", "SetChargingProfile", {{"connectorId": 1, "x": {deep}}}]'
    try:
        verdict = await expected_answer(text)
    except RecursionError:  # too deep for jsonschema too: refused as not the PDU's structure
        verdict = "FormationViolation"
    if verdict is IGNORED:  # unreadable: no unique id to answer to
        await wire.bench.session.send_raw(text)
        await wire.carries_on()
        return
    reply = await wire.answer(text)
    assert reply[:3] == [CALLERROR, f"deep-{depth}", verdict]
    await wire.carries_on()


@pytest.mark.parametrize("depth", [20, 500])
async def test_a_deep_or_mistyped_answer_to_its_own_call_is_a_failed_call_not_a_crash(
    wire: Wire, depth: int
) -> None:
    """The CSMS answers the charge point's Authorize with garbage under the right unique id."""
    bench = wire.bench
    session = bench.session
    deep = "[" * depth + "]" * depth
    answers = [
        f'[3, "UID", {deep}]',
        f'[4, "UID", {deep}, {deep}, {{}}]',
        f'[3, "UID", {{"idTagInfo": {{"status": "Accepted", "parentIdTag": {deep}}}}}]',
        '[3, "UID", {"x": 1}]',
    ]
    original = session.route_message
    for answer in answers:

        async def route_message(raw: str, answer: str = answer) -> None:
            msg = json.loads(raw)
            if msg[0] == CALL and msg[2] == "Authorize":
                await session.send_raw(answer.replace("UID", msg[1]))
                return  # instead of the real answer
            await original(raw)

        session.route_message = route_message  # type: ignore[method-assign]
        decided = bench.next_event(events.AuthorizeResult, connector=1)
        await bench.ctl("plug", 1)
        await bench.status(1, "Preparing")
        await bench.ctl("tag", 1, id_tag=TAG)
        outcome = await asyncio.wait_for(decided, 4)  # before the 5 s response timeout
        # Not an answer it can use: decided as offline, where an unknown idTag is not let in.
        assert outcome.state.transaction is None
        session.route_message = original  # type: ignore[method-assign]
        await bench.ctl("unplug", 1)
        await bench.status(1, "Available")
        await wire.carries_on()
    assert not bench.task.done()


@pytest.mark.parametrize(
    "payload",
    [
        '{"connectorId": 1, "csChargingProfiles": {"chargingProfileId": 1, "stackLevel": 0, '
        '"chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Absolute", '
        '"chargingSchedule": {"chargingRateUnit": "W", '
        '"chargingSchedulePeriod": [{"startPeriod": 0, "limit": LIMIT}]}}}',
        '{"transactionId": LIMIT}',
    ],
)
@pytest.mark.parametrize("limit", ["NaN", "Infinity", "-Infinity"])
async def test_numbers_json_does_not_have_never_reach_the_charger(
    wire: Wire, payload: str, limit: str
) -> None:
    """NaN and Infinity are not JSON; Python's parser takes them, the charge point must not."""
    action = "SetChargingProfile" if "csChargingProfiles" in payload else "RemoteStopTransaction"
    text = f'[2, "nan", "{action}", {payload.replace("LIMIT", limit)}]'
    reply = await wire.answer(text)
    assert reply[0] == CALLERROR, reply
    assert reply[2] in {
        "FormationViolation",
        "TypeConstraintViolation",
        "PropertyConstraintViolation",
    }
    await wire.carries_on()
