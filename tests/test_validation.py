"""The compiled validators judge every payload exactly as the `ocpp` library's jsonschema did.

hilsim validates what the CSMS sends with `hilsim.ocpp.validation` instead of the library's
per-message `jsonschema` run. These tests hold the two side by side: on payloads generated from
each OCPP 1.6 schema (mostly valid, with wrong types, missing and extra fields, long strings,
unknown enum values and non-multiples of 0.1 mixed in at every depth) both must accept the same
payloads, reject the others with the same CALLERROR code and message, and point at the same
place as `jsonschema`'s first error.
"""

from __future__ import annotations

import decimal
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallResult, _validate_payload

from hilsim.ocpp.validation import (
    DECIMAL_CALLS,
    DECIMAL_RESULTS,
    Schemas,
    SchemaViolation,
    bounded,
    compile_schema,
    library_schema_dir,
    snake_case,
    snake_key,
)

SCHEMAS = library_schema_dir()
NAMES = sorted(path.stem for path in SCHEMAS.glob("*.json"))
#: OCPP-J 1.6 spells these as hilsim answers them; the library uses the 2.0 names.
SPELLING_16 = {"FormatViolation": "FormationViolation"}
#: Where hilsim answers with the OCPP-J 1.6 code and the library does not (by violated keyword).
CODES_16 = {
    "enum": "PropertyConstraintViolation",
    "multipleOf": "PropertyConstraintViolation",
    "minItems": "OccurenceConstraintViolation",
}


def _load(name: str, decimals: bool) -> dict[str, Any]:
    text = (SCHEMAS / f"{name}.json").read_text(encoding="utf-8-sig")
    return json.loads(text, parse_float=decimal.Decimal if decimals else float)


def _action(name: str) -> tuple[str, bool]:
    """(action, is_response) of a schema file name."""
    if name.endswith("Response"):
        return name.removesuffix("Response"), True
    return name, False


def _decimals(name: str) -> bool:
    action, response = _action(name)
    return action in (DECIMAL_RESULTS if response else DECIMAL_CALLS)


# -- payloads drawn from a schema, with mistakes mixed in -----------------------------------------

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.text(max_size=5),
    st.just([]),
    st.just({}),
    st.just({"unexpected": 1}),
)
NUMBERS = st.one_of(
    st.integers(-10, 10**6),
    st.sampled_from([0.1, 21.4, 4.11, 16.0, 32.5, 0.05, 230.0, 1.25]),
    st.floats(-1e4, 1e4, allow_nan=False).map(lambda x: round(x, 2)),
)


def payloads(schema: dict[str, Any], root: dict[str, Any], depth: int = 0) -> st.SearchStrategy:
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"][2:].split("/"):
            target = target[part]
        return payloads(target, root, depth)
    good = _conforming(schema, root, depth)
    if depth > 4:
        return good
    return _mostly(good, JUNK)


def _mostly(good: st.SearchStrategy, wrong: st.SearchStrategy, odds: int = 15) -> st.SearchStrategy:
    """``good`` about ``odds`` times in ``odds + 1``: most documents hold one mistake or none.

    (``st.one_of`` would flatten nested choices and weigh every leaf alike.)
    """
    return st.integers(0, odds).flatmap(lambda pick: wrong if pick == 0 else good)


def _conforming(schema: dict[str, Any], root: dict[str, Any], depth: int) -> st.SearchStrategy:
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    if "enum" in schema:
        return _mostly(st.sampled_from(schema["enum"]), st.sampled_from(["bogus", "accepted"]), 4)
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        fields = {k: payloads(v, root, depth + 1) for k, v in properties.items()}
        base = st.fixed_dictionaries(
            {k: s for k, s in fields.items() if k in required},
            optional={k: s for k, s in fields.items() if k not in required},
        )
        dropped = base.flatmap(
            lambda d: st.sets(st.sampled_from(sorted(d) or [""]), max_size=1).map(
                lambda gone: {k: v for k, v in d.items() if k not in gone}
            )
        )
        extra = base.map(lambda d: {**d, "notInTheSchema": True})
        return _mostly(base, st.one_of(dropped, extra), 6)
    if kind == "array":
        items = schema.get("items", {})
        element = payloads(items, root, depth + 1) if isinstance(items, dict) else JUNK
        return st.lists(element, max_size=3)
    if kind == "string":
        if "maxLength" not in schema:
            return st.text(max_size=30)
        limit = schema["maxLength"]
        too_long = st.integers(1, 3).map(lambda extra: "x" * (limit + extra))
        return _mostly(st.text(max_size=min(limit, 40)), too_long, 8)
    if kind == "integer":
        return _mostly(st.integers(-10, 10**6), st.sampled_from([2.0, True]), 6)
    if kind == "number":
        return NUMBERS
    if kind == "boolean":
        return _mostly(st.booleans(), st.just(1), 6)
    return JUNK


# -- the verdicts ------------------------------------------------------------------------------


def library_verdict(name: str, payload: Any) -> tuple[str, str] | None:
    """What the `ocpp` library answered: None when valid, else (1.6 error code, message)."""
    action, response = _action(name)
    message = CallResult("u1", payload, action=action) if response else Call("u1", action, payload)
    try:
        _validate_payload(message, "1.6")
    except OCPPError as exc:
        code = SPELLING_16.get(exc.code, exc.code)
        return code, str(exc.details.get("cause", exc.description))
    return None


def hilsim_verdict(schemas: Schemas, name: str, payload: Any) -> SchemaViolation | None:
    action, response = _action(name)
    try:
        if response:
            schemas.check_result(action, payload)
        else:
            schemas.check_call(action, payload)
    except SchemaViolation as violation:
        return violation
    return None


@pytest.fixture(scope="module")
def schemas() -> Schemas:
    return Schemas()


def test_every_library_schema_compiles() -> None:
    # the 28 actions of OCPP 1.6 and the security whitepaper's, each request and response
    assert {"GetConfiguration", "GetConfigurationResponse", "HeartbeatResponse"} <= set(NAMES)
    for name in NAMES:
        compile_schema(_load(name, _decimals(name)), exact_decimals=_decimals(name))


@pytest.mark.parametrize("name", NAMES)
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_same_verdict_as_the_library(schemas: Schemas, name: str, data: st.DataObject) -> None:
    decimals = _decimals(name)
    schema = _load(name, decimals)
    payload = data.draw(_mostly(payloads(schema, schema), JUNK, 8), label="payload")
    mine = hilsim_verdict(schemas, name, json.loads(json.dumps(payload)))
    theirs = library_verdict(name, json.loads(json.dumps(payload)))
    if theirs is None:
        assert mine is None, f"hilsim rejects what the library accepted: {mine}"
        return
    assert mine is not None, f"hilsim accepts what the library rejected: {theirs}"
    assert mine.error_code == CODES_16.get(mine.keyword, theirs[0])
    if mine.keyword in ("type", "required", "additionalProperties", "maxLength"):
        assert mine.message == theirs[1]
    # ... and it is jsonschema's first error, at the same place.
    instance = json.loads(json.dumps(payload), parse_float=decimal.Decimal if decimals else float)
    first = next(Draft4Validator(schema).iter_errors(instance))
    assert (mine.keyword, mine.path) == (first.validator, list(first.absolute_path))


@pytest.mark.parametrize(
    ("action", "payload", "code"),
    [
        ("ChangeConfiguration", {"key": "HeartbeatInterval"}, "ProtocolError"),
        ("ChangeConfiguration", {"key": 5, "value": "1"}, "TypeConstraintViolation"),
        ("ChangeConfiguration", {"key": "k" * 51, "value": "1"}, "TypeConstraintViolation"),
        ("RemoteStopTransaction", {"transactionId": 1, "x": 1}, "FormationViolation"),
        ("GetConfiguration", [], "TypeConstraintViolation"),
        ("UnlockConnector", {"connectorId": True}, "TypeConstraintViolation"),
        # OCPP-J 1.6: "at least one field contains an invalid value" (the library: Formation)
        ("Reset", {"type": "Warm"}, "PropertyConstraintViolation"),  # not one of the enum
        ("RemoteStopTransaction", {"transactionId": 10**30}, "PropertyConstraintViolation"),
        ("RemoteStopTransaction", {"transactionId": -(2**63) - 1}, "PropertyConstraintViolation"),
        (
            "ReserveNow",
            {
                "connectorId": 1,
                "expiryDate": "2027-01-01T00:00:00Z",
                "idTag": "A",
                "reservationId": 2**63,
            },
            "PropertyConstraintViolation",
        ),
        (
            "SendLocalList",
            {"listVersion": 2**64, "updateType": "Full"},
            "PropertyConstraintViolation",
        ),
    ],
)
def test_violations_get_the_ocpp_j_16_error_codes(
    schemas: Schemas, action: str, payload: Any, code: str
) -> None:
    with pytest.raises(SchemaViolation) as caught:
        schemas.check_call(action, payload)
    assert caught.value.error_code == code


def test_the_signed_64_bit_range_is_valid_and_no_more(schemas: Schemas) -> None:
    """SQLite stores integers in 64 bits: the last one that fits passes, the next does not."""
    schemas.check_call("RemoteStopTransaction", {"transactionId": 2**63 - 1})
    schemas.check_call("RemoteStopTransaction", {"transactionId": -(2**63)})
    with pytest.raises(SchemaViolation) as caught:
        schemas.check_result(
            "StartTransaction", {"transactionId": 2**63, "idTagInfo": {"status": "Accepted"}}
        )
    assert caught.value.where == "transactionId"
    assert caught.value.error_code == "PropertyConstraintViolation"
    with pytest.raises(SchemaViolation) as caught:  # inside a list, inside an object
        schemas.check_call(
            "SetChargingProfile",
            {
                "connectorId": 1,
                "csChargingProfiles": {
                    "chargingProfileId": 1,
                    "stackLevel": 0,
                    "chargingProfilePurpose": "TxDefaultProfile",
                    "chargingProfileKind": "Absolute",
                    "chargingSchedule": {
                        "chargingRateUnit": "A",
                        "chargingSchedulePeriod": [{"startPeriod": 10**20, "limit": 6.0}],
                    },
                },
            },
        )
    assert caught.value.where == (
        "csChargingProfiles/chargingSchedule/chargingSchedulePeriod/0/startPeriod"
    )


def test_bounds_are_reported_where_draft4_reports_them_first() -> None:
    """The added bounds are ordinary draft-04 keywords: jsonschema finds the same first error."""
    schema = json.loads((SCHEMAS / "RemoteStopTransaction.json").read_text(encoding="utf-8-sig"))
    for payload in ({"transactionId": 10**30}, {"transactionId": 10**30, "x": 1}, {"x": 10**30}):
        first = next(Draft4Validator(bounded(schema)).iter_errors(payload))
        with pytest.raises(SchemaViolation) as caught:
            compile_schema(bounded(schema))(payload)
        assert (caught.value.keyword, caught.value.path) == (first.validator, list(first.path))


def test_charging_limits_are_exact_decimals(schemas: Schemas) -> None:
    def profile(limit: float) -> dict[str, Any]:
        return {
            "connectorId": 1,
            "csChargingProfiles": {
                "chargingProfileId": 1,
                "stackLevel": 0,
                "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Absolute",
                "chargingSchedule": {
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
                },
            },
        }

    schemas.check_call("SetChargingProfile", profile(21.4))  # 21.4 / 0.1 is not whole in floats
    with pytest.raises(SchemaViolation) as caught:
        schemas.check_call("SetChargingProfile", profile(4.11))
    assert caught.value.keyword == "multipleOf"
    assert (
        caught.value.where == "csChargingProfiles/chargingSchedule/chargingSchedulePeriod/0/limit"
    )


def test_an_action_without_a_schema_is_not_implemented(tmp_path: Path) -> None:
    with pytest.raises(SchemaViolation) as caught:
        Schemas(tmp_path).check_call("Heartbeat", {})
    assert caught.value.error_code == "NotImplemented"


def test_unsupported_keywords_are_refused_when_compiled() -> None:
    with pytest.raises(ValueError, match="pattern"):
        compile_schema({"type": "string", "pattern": "^a"})


def test_each_schema_is_compiled_once(schemas: Schemas) -> None:
    schemas.check_call("Heartbeat", {})
    compiled = schemas._compiled["Heartbeat"]
    schemas.check_call("Heartbeat", {})
    assert schemas._compiled["Heartbeat"] is compiled


@pytest.mark.parametrize(
    "key",
    ["chargingProfileId", "csChargingProfiles", "SoC", "meterValue", "ocppCSMSURL", "V2XCharging"],
)
def test_keys_become_snake_case_as_the_library_makes_them(key: str) -> None:
    from ocpp.charge_point import camel_to_snake_case

    assert snake_key(key) == next(iter(camel_to_snake_case({key: 1})))


def test_snake_case_converts_nested_keys_only() -> None:
    payload = {"chargingSchedule": {"chargingSchedulePeriod": [{"startPeriod": 0}]}, "idTag": "aB"}
    assert snake_case(payload) == {
        "charging_schedule": {"charging_schedule_period": [{"start_period": 0}]},
        "id_tag": "aB",
    }


# -- at the charge point: what the CSMS answers is validated too ---------------------------------


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ({"currentTime": 5}, "TypeConstraintViolation"),
        ({}, "ProtocolError"),
        ({"currentTime": "2024-05-01T12:00:00Z", "extra": 1}, "FormationViolation"),
    ],
)
async def test_an_invalid_callresult_from_the_csms_is_refused(
    answer: dict[str, Any], code: str
) -> None:
    """A real websocket peer answers Heartbeat badly; the client raises instead of returning it."""
    import asyncio

    from websockets.asyncio.server import ServerConnection, serve

    from hilsim.ocpp.client import CallErrorReceived, ChargePointClient
    from hilsim.ocpp.transport import open_link

    async def csms(ws: ServerConnection) -> None:
        async for text in ws:
            call = json.loads(text)
            await ws.send(json.dumps([3, call[1], answer]))

    async with serve(csms, "127.0.0.1", 0, subprotocols=["ocpp1.6"]) as server:  # type: ignore[list-item]
        port = server.sockets[0].getsockname()[1]
        ws = await open_link(f"ws://127.0.0.1:{port}/CP1")
        client = ChargePointClient("CP1", ws, charger=None, response_timeout=5)  # type: ignore[arg-type]
        reader = asyncio.create_task(client.start())
        try:
            with pytest.raises(CallErrorReceived) as caught:
                await client.heartbeat()
            assert caught.value.code == code
            assert "Heartbeat" in str(caught.value)
        finally:
            reader.cancel()
            await ws.close()
            await asyncio.gather(reader, return_exceptions=True)
