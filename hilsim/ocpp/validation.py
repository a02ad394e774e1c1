"""Validation of every payload the CSMS sends, with each JSON schema compiled once.

The `ocpp` library validates a payload by handing it to `jsonschema`, which walks the schema
anew for every message; on a Pi Zero that walk costs more than the round trip on the wire. Here
each schema is translated, on first use, into nested Python closures that check exactly what
``jsonschema.Draft4Validator`` checks, keyword by keyword in the schema's own order. The first
violation found is therefore the one the library would have raised, and it is answered with the
same CALLERROR code (tests/test_validation.py holds the two side by side on generated payloads).

The schemas are the ones the `ocpp` library ships and validated with until now (the official
OCA schemas in ``hilsim/csms/schemas`` are stricter; they are the built-in CSMS's business). They
are read as files, so the library itself, and `jsonschema` with it, is never imported by a
running charge point.

Only the draft-04 keywords those schemas use are supported; a schema with any other validating
keyword is refused when it is compiled, never silently half-checked. The compiler is
`hilsim.ocpp.schema_compiler`, the code each violation is answered with `hilsim.ocpp.violations`;
this module picks the schemas, bounds them and holds their dates, and its names are the ones the
rest of hilsim imports.

Two deliberate differences from the library, both for values it lets through that the charge point
cannot use:

* every ``integer`` and ``number`` in a schema is bounded to the signed 64-bit range (`bounded`):
  a transactionId of 10**30 is valid JSON and valid to the schema, but no SQLite column, and so
  no outbox row, reservation or charging profile can hold it. It is refused like any other
  invalid value, before any handler or the store sees it;
* every ``date-time`` is held to `hilsim.clock.DATE_RANGE` (`Schemas.hold_dates_of_call`), a
  check the library does not make: 9999-12-31T23:59:59-05:00 is a valid string to it, but in UTC
  it is year 10000, which Python's datetime cannot hold, and it crashed the handlers and the
  snapshots that meet it. What a date beyond the range means is plain in every field but one, so
  it is clamped to the bound and logged: an expiryDate, validTo, stopTime or retrieveDate after
  9000 is never reached, one before 1970 (a validFrom, startTime, an expired expiryDate) long
  past, and so is the bound. A chargingSchedule's startSchedule is the exception: its periods
  count from it, so no other start means the same; one outside the range is a
  PropertyConstraintViolation. currentTime is the clock's to judge (`hilsim.clock.SANE_WINDOW`).
  A date that does not parse at all is left to the handler, as before (each says what it does
  with one);
* violations are answered with the OCPP-J 1.6 code for them (section 4.2.3) where the library's
  choice is not that: a value outside an enumeration, off a ``multipleOf`` step or out of range
  is a PropertyConstraintViolation ("at least one field contains an invalid value"), too few
  items an OccurenceConstraintViolation.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from hilsim.clock import DATE_RANGE, parse_iso, utc_iso
from hilsim.ocpp.schema_compiler import Check, accept, compile_schema, resolve_ref
from hilsim.ocpp.violations import SchemaViolation, UnknownSchema

__all__ = [
    "DECIMAL_CALLS",
    "DECIMAL_RESULTS",
    "INT64_MAX",
    "INT64_MIN",
    "Check",
    "SchemaViolation",
    "Schemas",
    "UnknownSchema",
    "bounded",
    "compile_schema",
    "library_schema_dir",
    "snake_case",
    "snake_key",
]

log = logging.getLogger(__name__)

#: Calls whose schemas hold ``multipleOf: 0.1``: numbers are compared as exact decimals, as on
#: the wire (and as the library does), so that 21.4 is a multiple of 0.1.
DECIMAL_CALLS = frozenset({"SetChargingProfile", "RemoteStartTransaction"})
DECIMAL_RESULTS = frozenset({"GetCompositeSchedule"})


#: The range every OCPP integer (and number) is held to: what SQLite stores as an INTEGER.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def library_schema_dir(version: str = "v16") -> Path:
    """Where the installed `ocpp` library keeps the schemas of ``version`` ("v16", "v201"),
    without importing it."""
    spec = find_spec("ocpp")
    locations = spec.submodule_search_locations if spec is not None else None
    if not locations:
        raise RuntimeError("the ocpp library is not installed: it ships the OCPP schemas")
    return Path(next(iter(locations))) / version / "schemas"


#: Per version: the file names of a CALL's and a CALLRESULT's schema (1.6: ``Reset.json`` and
#: ``ResetResponse.json``; 2.0.1: ``ResetRequest.json`` and ``ResetResponse.json``), the label
#: a clamped date is logged with, and the actions whose numbers are compared as exact decimals.
_LAYOUTS: dict[str, tuple[str, str, str, frozenset[str], frozenset[str]]] = {
    "v16": ("", "Response", ".conf", DECIMAL_CALLS, DECIMAL_RESULTS),
    # The 2.0.1 schemas have no multipleOf: no payload needs decimals.
    "v201": ("Request", "Response", "Response", frozenset(), frozenset()),
}


class Schemas:
    """One OCPP version's request and response validators, each compiled the first time it is
    used. ``version``: "v16" (the default) or "v201", as the `ocpp` library names its folders.

    One instance is meant to live as long as the process (the CSMS link owns it), so a
    reconnection does not compile anything again.
    """

    def __init__(self, directory: Path | None = None, *, version: str = "v16") -> None:
        self.version = version
        self.directory = directory if directory is not None else library_schema_dir(version)
        (
            self._call_suffix,
            self._result_suffix,
            self._result_label,
            self._decimal_calls,
            self._decimal_results,
        ) = _LAYOUTS[version]
        # Keyed by action: the hot path looks a CALL's validator up without building a name.
        self._compiled: dict[str, Check] = {}
        self._results: dict[str, Check] = {}
        self._held: dict[str, Check] = {}

    def knows(self, action: str) -> bool:
        """Whether this OCPP version (1.6: with its security extension) defines ``action``."""
        name = f"{action}{self._call_suffix}.json"
        return action.isidentifier() and (self.directory / name).is_file()

    def check_call(self, action: str, payload: Any) -> None:
        """Raise SchemaViolation unless ``payload`` is a valid CALL payload of ``action``."""
        check = self._compiled.get(action)
        if check is None:
            name = action + self._call_suffix
            check = self._compile_file(name, action, action in self._decimal_calls)
            self._compiled[action] = check
        check(payload)

    def check_result(self, action: str, payload: Any) -> None:
        """Raise SchemaViolation unless ``payload`` is a valid CALLRESULT payload of ``action``."""
        check = self._results.get(action)
        if check is None:
            name = action + self._result_suffix
            check = self._compile_file(name, action, action in self._decimal_results)
            self._results[action] = check
        check(payload)

    def hold_dates_of_call(self, action: str, payload: Any) -> None:
        """Bring every date-time of a valid CALL payload within DATE_RANGE, in place.

        Raises SchemaViolation for a startSchedule outside it (see the module docstring).
        """
        self._dates(action + self._call_suffix, action)(payload)

    def hold_dates_of_result(self, action: str, payload: Any) -> None:
        """The same for a valid CALLRESULT payload of ``action``."""
        self._dates(action + self._result_suffix, action + self._result_label)(payload)

    def _dates(self, name: str, label: str) -> Check:
        hold = self._held.get(name)
        if hold is None:
            try:
                paths = list(_date_paths(json.loads(self._text(name))))
            except (OSError, ValueError):
                paths = []  # check_* has already refused a payload without a schema
            hold = self._held[name] = _date_holder(label, paths)
        return hold

    def _text(self, name: str) -> str:
        return (self.directory / f"{name}.json").read_text(encoding="utf-8-sig")

    def _compile_file(self, name: str, action: str, exact_decimals: bool) -> Check:
        try:
            text = self._text(name)
            if exact_decimals:  # decimal loads for the three schemas that need it, only
                from decimal import Decimal

                schema = json.loads(text, parse_float=Decimal)
            else:
                schema = json.loads(text)
        except (OSError, ValueError):
            cause = f"Failed to validate action: {action}"

            def unknown(payload: Any) -> None:
                raise UnknownSchema("schema", cause)

            return unknown
        check = compile_schema(bounded(schema), exact_decimals=exact_decimals)
        if not exact_decimals:
            return check

        def exact(payload: Any) -> None:
            check(_as_decimals(payload, Decimal))

        return exact


def _as_decimals(payload: Any, decimal: type) -> Any:
    """The payload as a JSON parser with exact decimals sees it (floats come from the wire)."""
    if isinstance(payload, float):
        finite = payload == payload and abs(payload) != float("inf")
        return decimal(repr(payload)) if finite else payload
    if isinstance(payload, dict):
        return {key: _as_decimals(value, decimal) for key, value in payload.items()}
    if isinstance(payload, list):
        return [_as_decimals(value, decimal) for value in payload]
    return payload


def bounded(schema: Any) -> Any:
    """``schema`` with every integer and number held to the signed 64-bit range.

    ``minimum``/``maximum`` go right after the ``type`` they belong to, so a value that is both
    out of range and wrong elsewhere is reported where Draft4Validator, given the same schema,
    would report it first. An explicit bound in the schema is kept.
    """
    if isinstance(schema, list):
        return [bounded(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for keyword, value in schema.items():
        if keyword in ("properties", "definitions"):
            out[keyword] = {name: bounded(sub) for name, sub in value.items()}
        elif keyword in ("items", "additionalProperties", "additionalItems"):
            out[keyword] = bounded(value)
        else:
            out[keyword] = value
        if keyword == "type":
            types = [value] if isinstance(value, str) else list(value)
            if "integer" in types or "number" in types:
                out.setdefault("minimum", schema.get("minimum", INT64_MIN))
                out.setdefault("maximum", schema.get("maximum", INT64_MAX))
    return out


# -- date-times ---------------------------------------------------------------------------------

#: Fields whose far-off dates are not clamped: the clock judges currentTime itself, and a schedule
#: moved to another start would mean other limits at other times.
_CLOCK_FIELDS = frozenset({"currentTime"})
_REFUSED_FIELDS = frozenset({"startSchedule"})

_Path = tuple[str | None, ...]  # property names; None for "every item of the array"


def _date_paths(
    schema: Any, root: Any = None, prefix: _Path = (), seen: frozenset[str] = frozenset()
) -> Iterator[_Path]:
    """Where a payload of ``schema`` may hold a ``date-time``."""
    if not isinstance(schema, dict):
        return
    root = schema if root is None else root
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/") and ref not in seen:
        yield from _date_paths(resolve_ref(root, ref), root, prefix, seen | {ref})
        return
    if schema.get("format") == "date-time":
        yield prefix
    for name, sub in schema.get("properties", {}).items():
        yield from _date_paths(sub, root, (*prefix, name), seen)
    items = schema.get("items")
    if isinstance(items, dict):
        yield from _date_paths(items, root, (*prefix, None), seen)


def _date_holder(label: str, paths: list[_Path]) -> Check:
    """A callable that holds the date-times at ``paths`` of a payload to DATE_RANGE, in place."""
    paths = [path for path in paths if path and path[-1] not in _CLOCK_FIELDS]
    if not paths:
        return accept

    def hold(payload: Any) -> None:
        for path in paths:
            _hold_at(label, payload, path, [])

    return hold


def _hold_at(label: str, data: Any, path: _Path, where: list[str | int]) -> None:
    head, rest = path[0], path[1:]
    if head is None:  # no OCPP schema has an array of date-times: ``rest`` is never empty
        if isinstance(data, list) and rest:
            for index, item in enumerate(data):
                _hold_at(label, item, rest, [*where, index])
        return
    if not isinstance(data, dict) or head not in data:
        return
    if rest:
        _hold_at(label, data[head], rest, [*where, head])
        return
    text = data[head]
    if not isinstance(text, str):
        return
    try:
        moment = parse_iso(text)
    except ValueError:
        return  # unreadable: the handler says what it does with it
    earliest, latest = DATE_RANGE
    if earliest <= moment < latest:
        return
    if head in _REFUSED_FIELDS:
        raise SchemaViolation(
            "dateRange",
            f"{text!r} is outside {utc_iso(earliest)}..{utc_iso(latest)}: "
            "no schedule this charge point runs starts there",
            [*where, head],
        )
    bound = latest if moment >= latest else earliest
    data[head] = utc_iso(bound)
    log.info(
        "%s %s %s is %s %d: taken as %s (%s)",
        label,
        "/".join(str(part) for part in [*where, head]),
        text,
        "after" if bound is latest else "before",
        bound.year,
        data[head],
        "never reached" if bound is latest else "long past",
    )


# -- the compiler --------------------------------------------------------------------------------


# -- keys: the wire's camelCase, the handlers' snake_case ---------------------------------------


@lru_cache(maxsize=1024)
def snake_key(key: str) -> str:
    """``chargingProfileId`` -> ``charging_profile_id``, exactly as the `ocpp` library does it.

    Cached: the same few dozen keys arrive over and over, and the regular expressions are the
    most expensive part of handling a small CALL.
    """
    key = key.replace("ocppCSMSURL", "ocpp_csms_url")
    key = key.replace("V2X", "_v2x").replace("V2G", "_v2g")
    first = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", key)
    return re.sub("([a-z0-9])([A-Z])(?=\\S)", r"\1_\2", first).lower()


def snake_case(data: Any) -> Any:
    """Every dict key inside ``data`` converted with `snake_key`; values left as they are."""
    if isinstance(data, dict):
        return {snake_key(key): snake_case(value) for key, value in data.items()}
    if isinstance(data, list):
        return [snake_case(value) for value in data]
    return data
