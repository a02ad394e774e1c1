"""Validate OCPP 2.0.1 payloads as a strict CSMS does: against the official OCA 2.0.1 schemas.

The schemas are the ones the ``ocpp`` library ships (``ocpp/v201/schemas/<Action>Request.json``
and ``<Action>Response.json``, "OCPP 2.0.1 FINAL", draft-06). They are the OCA's own files:
every object has ``additionalProperties: false`` except ``CustomDataType``, which the standard
leaves open on purpose (vendor extensions go there). So unlike 1.6 (see :mod:`hilsim.csms.strict`)
no stricter copy is needed; what this module adds over the library's validation is the same
judgement as the 1.6 side: exact decimals for ``multipleOf``, RFC 3339 date-times with an
offset, every violation named with its field, and the OCPP-J 2.0.1 CALLERROR codes.

The API mirrors :mod:`hilsim.csms.strict` (``check``, ``validate``, ``error_code``, ``schema``,
``actions``) so that a session, the console and tests use either module the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft6Validator

from hilsim.csms.strict import FORMATS, describe

__all__ = [
    "ERROR_CODES",
    "Violation",
    "actions",
    "check",
    "error_code",
    "schema",
    "validate",
]

#: OCPP-J 2.0.1 (section 4.3) CALLERROR codes for payloads that break the schema. Unlike 1.6,
#: "FormatViolation" and "OccurrenceConstraintViolation" are spelled this way.
FORMAT = "FormatViolation"
OCCURRENCE = "OccurrenceConstraintViolation"
TYPE = "TypeConstraintViolation"
PROPERTY = "PropertyConstraintViolation"
ERROR_CODES = (FORMAT, OCCURRENCE, TYPE, PROPERTY)

_CODE_BY_KEYWORD = {
    "additionalProperties": FORMAT,  # syntactically not the PDU of the action
    "required": OCCURRENCE,  # a mandatory field is missing
    "minItems": OCCURRENCE,
    "maxItems": OCCURRENCE,
    "type": TYPE,
    "maxLength": TYPE,  # identifierString, string[36] and friends are data types
    "format": TYPE,  # dateTime
}
_PRIORITY = {FORMAT: 0, OCCURRENCE: 1, TYPE: 2, PROPERTY: 3}
_PACKAGE = "ocpp.v201"


@dataclass(frozen=True, slots=True)
class Violation:
    """One way a 2.0.1 payload breaks its official schema."""

    action: str
    response: bool
    path: str  # "evse/connectorId"; "" for the payload itself
    keyword: str  # the JSON-schema keyword that failed
    message: str

    @property
    def error_code(self) -> str:
        """The OCPP-J 2.0.1 CALLERROR code a strict receiver answers this violation with."""
        if self.path == "" and self.keyword == "type":
            return FORMAT
        return _CODE_BY_KEYWORD.get(self.keyword, PROPERTY)

    def __str__(self) -> str:
        where = self.path or "payload"
        return f"{schema_name(self.action, response=self.response)}: {where}: {self.message}"


def schema_name(action: str, *, response: bool) -> str:
    """The 2.0.1 schema file's name: ``ResetRequest``, ``ResetResponse``."""
    return f"{action}{'Response' if response else 'Request'}"


def _folder() -> Any:
    return resources.files(_PACKAGE).joinpath("schemas")


@cache
def actions() -> frozenset[str]:
    """Every OCPP 2.0.1 action with an official schema, e.g. ``"TransactionEvent"``."""
    return frozenset(
        entry.name.removesuffix("Request.json")
        for entry in _folder().iterdir()
        if entry.name.endswith("Request.json")
    )


@cache
def _schema(name: str) -> dict[str, Any]:
    # The files are UTF-8 with a byte order mark in some library releases.
    text = _folder().joinpath(f"{name}.json").read_text("utf-8-sig")
    loaded: dict[str, Any] = json.loads(text, parse_float=Decimal)
    return loaded


def schema(action: str, *, response: bool) -> dict[str, Any]:
    """The official schema of an action's request (or response); {} for an unknown action."""
    if action not in actions():
        return {}
    return _schema(schema_name(action, response=response))


@cache
def _validator(name: str) -> Draft6Validator:
    loaded = _schema(name)
    Draft6Validator.check_schema(loaded)
    return Draft6Validator(loaded, format_checker=FORMATS)


def check(action: str, payload: Any, *, response: bool) -> list[Violation]:
    """Every violation of the official 2.0.1 schema for this action's request (or response)."""
    if action not in actions():
        return [
            Violation(
                action, response, "", "action", "not an OCPP 2.0.1 action (no official schema)"
            )
        ]
    validator = _validator(schema_name(action, response=response))
    try:
        instance = json.loads(json.dumps(payload, default=str), parse_float=Decimal)
    except (TypeError, ValueError) as exc:
        return [Violation(action, response, "", "type", f"payload is not JSON: {exc}")]
    found = []
    for error in validator.iter_errors(instance):
        path = "/".join(str(part) for part in error.absolute_path)
        found.append(Violation(action, response, path, str(error.validator), describe(error)))
    return found


def validate(action: str, payload: dict[str, Any], *, response: bool) -> list[str]:
    """Check a payload (camelCase, as on the wire); one readable line per violation."""
    return [str(v) for v in check(action, payload, response=response)]


def error_code(violations: list[Violation]) -> str:
    """The one CALLERROR code to answer a set of violations with (the most structural one)."""
    if not violations:
        raise ValueError("no violations, no error code")
    return min((v.error_code for v in violations), key=_PRIORITY.__getitem__)
