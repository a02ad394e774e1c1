"""Validate OCPP 1.6J payloads the way strict central systems do: against the official OCA schemas.

The schemas in ``schemas/`` are the Open Charge Alliance's OCPP 1.6 edition 2 JSON schemas
(``urn:OCPP:1.6:2019:12:...``); ``schemas/README.md`` says where they come from and how they
differ from the copies inside the ``ocpp`` library (which accept more than the official ones,
e.g. the unit ``Hertz``). Validation is what strict central systems apply: ``additionalProperties``
false, exact enums, ``maxLength``, ``required``, ``multipleOf`` and RFC 3339 ``date-time``.

Numbers are compared as :class:`decimal.Decimal` so that ``"limit": 21.4`` is a multiple of 0.1,
as it is on the wire (binary floats would say it is not).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import ValidationError

__all__ = [
    "ERROR_CODES",
    "FORMATS",
    "Violation",
    "actions",
    "check",
    "describe",
    "error_code",
    "schema",
    "validate",
]

#: OCPP-J 1.6 CALLERROR codes for schema violations, spelled as in the 1.6 specification
#: (the errata keeps "FormationViolation" and "OccurenceConstraintViolation" as they are).
FORMATION = "FormationViolation"
OCCURENCE = "OccurenceConstraintViolation"
TYPE = "TypeConstraintViolation"
PROPERTY = "PropertyConstraintViolation"
ERROR_CODES = (FORMATION, OCCURENCE, TYPE, PROPERTY)

# Which CALLERROR a failed JSON-schema keyword calls for, per OCPP-J 1.6 section 4.2.3.
_CODE_BY_KEYWORD = {
    "additionalProperties": FORMATION,  # not conform the PDU structure
    "required": OCCURENCE,  # a mandatory field is missing
    "minItems": OCCURENCE,
    "maxItems": OCCURENCE,
    "type": TYPE,  # e.g. "somestring": 12
    "maxLength": TYPE,  # CiString20Type and friends are data types
    "format": TYPE,  # dateTime, anyURI
}
_PRIORITY = {FORMATION: 0, OCCURENCE: 1, TYPE: 2, PROPERTY: 3}

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$",
)
_FORMATS = FormatChecker(formats=())
#: The formats strict peers check: RFC 3339 date-time with offset, absolute URI (both versions).
FORMATS = _FORMATS


@_FORMATS.checks("date-time")
def _is_date_time(value: object) -> bool:
    """RFC 3339 date-time, as draft-04 defines it: the offset ("Z" or "+02:00") is mandatory."""
    if not isinstance(value, str):
        return True  # the "type" keyword reports non-strings
    if not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


@_FORMATS.checks("uri")
def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme) and bool(parts.netloc or parts.path)


@dataclass(frozen=True, slots=True)
class Violation:
    """One way a payload breaks its official schema."""

    action: str
    response: bool
    path: str  # JSON pointer-ish: "meterValue/0/sampledValue/0/unit"; "" for the payload itself
    keyword: str  # the JSON-schema keyword that failed: "enum", "additionalProperties", ...
    message: str

    @property
    def error_code(self) -> str:
        """The OCPP-J 1.6 CALLERROR code a strict receiver answers this violation with."""
        if self.path == "" and self.keyword == "type":
            return FORMATION  # the payload is not even a JSON object
        return _CODE_BY_KEYWORD.get(self.keyword, PROPERTY)

    def __str__(self) -> str:
        where = self.path or "payload"
        return f"{self.action}.{'conf' if self.response else 'req'}: {where}: {self.message}"


def schema_name(action: str, *, response: bool) -> str:
    return f"{action}Response" if response else action


@cache
def actions() -> frozenset[str]:
    """Every action with an official schema, e.g. ``"BootNotification"``."""
    folder = resources.files(__package__).joinpath("schemas")
    return frozenset(
        entry.name.removesuffix(".json")
        for entry in folder.iterdir()
        if entry.name.endswith(".json") and not entry.name.endswith("Response.json")
    )


@cache
def _schema(name: str) -> dict[str, Any]:
    folder = resources.files(__package__).joinpath("schemas")
    text = folder.joinpath(f"{name}.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text, parse_float=Decimal)
    return loaded


def schema(action: str, *, response: bool) -> dict[str, Any]:
    """The official schema of an action's request (or response); {} for an unknown action.

    `hilsim csms send` reads it to know which fields are strings (``idTag=1234`` stays text).
    """
    if action not in actions():
        return {}
    return _schema(schema_name(action, response=response))


@cache
def _validator(name: str) -> Draft4Validator:
    """Compile one schema, once."""
    loaded = _schema(name)
    Draft4Validator.check_schema(loaded)
    return Draft4Validator(loaded, format_checker=_FORMATS)


def _as_on_the_wire(payload: Any) -> Any:
    """The payload as a JSON parser with exact decimals sees it."""
    return json.loads(json.dumps(payload, default=str), parse_float=Decimal)


def describe(error: ValidationError) -> str:
    """One readable line for a schema error (:mod:`hilsim.csms.strict201` words them alike)."""
    if error.validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return f"{error.instance!r} is not one of: {allowed}"
    if error.validator == "format" and error.validator_value == "date-time":
        return f"{error.instance!r} is not an RFC 3339 date-time with offset (e.g. ...T12:00:00Z)"
    if error.validator == "multipleOf":
        return f"{error.instance} is not a multiple of {error.validator_value}"
    return error.message


def check(action: str, payload: Any, *, response: bool) -> list[Violation]:
    """Every violation of the official schema for this action's request (or response)."""
    if action not in actions():
        return [
            Violation(action, response, "", "action", "not an OCPP 1.6 action (no official schema)")
        ]
    validator = _validator(schema_name(action, response=response))
    try:
        instance = _as_on_the_wire(payload)
    except (TypeError, ValueError) as exc:
        return [Violation(action, response, "", "type", f"payload is not JSON: {exc}")]
    found = []
    for error in validator.iter_errors(instance):
        path = "/".join(str(part) for part in error.absolute_path)
        found.append(Violation(action, response, path, str(error.validator), describe(error)))
    return found


def validate(action: str, payload: dict[str, Any], *, response: bool) -> list[str]:
    """Check a payload (camelCase, as on the wire) against the official OCPP 1.6 schema.

    ``response=False`` checks the CALL payload of ``action``, ``response=True`` its CALLRESULT
    payload. Returns one readable line per violation; an empty list means valid.
    """
    return [str(v) for v in check(action, payload, response=response)]


def error_code(violations: list[Violation]) -> str:
    """The one CALLERROR code to answer a set of violations with (the most structural one)."""
    if not violations:
        raise ValueError("no violations, no error code")
    return min((v.error_code for v in violations), key=_PRIORITY.__getitem__)
