"""Test helper: judge OCPP 2.0.1 payloads by the official 2.0.1 JSON schemas, strictly.

The schemas are those the `ocpp` library ships (``ocpp/v201/schemas``, OCPP 2.0.1 FINAL); they
say ``additionalProperties: false`` themselves. Applied here as a strict peer applies them:
draft 6, exact enums, maxLength, required, and RFC 3339 ``date-time`` (offset mandatory).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft6Validator, FormatChecker

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_FORMATS = FormatChecker(formats=())


@_FORMATS.checks("date-time")
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


@cache
def validator(action: str, response: bool) -> Draft6Validator:
    name = f"{action}{'Response' if response else 'Request'}.json"
    text = resources.files("ocpp.v201").joinpath("schemas", name).read_text(encoding="utf-8-sig")
    return Draft6Validator(json.loads(text), format_checker=_FORMATS)


def violations(action: str, payload: Any, *, response: bool) -> list[str]:
    return [
        f"{action}{'Response' if response else 'Request'}: {'/'.join(map(str, e.path))}: "
        f"{e.message}"
        for e in validator(action, response).iter_errors(payload)
    ]


def assert_valid(action: str, payload: Any, *, response: bool) -> None:
    found = violations(action, payload, response=response)
    assert not found, "not valid OCPP 2.0.1:\n  " + "\n  ".join(found)


def frame_violations(frames: list[tuple[bool, str]]) -> list[str]:
    """Every violation in recorded OCPP-J 2.0.1 frames (sent?, text), both directions: each
    CALL by its action's request schema, each CALLRESULT by the response schema of the CALL of
    the same unique id."""
    actions: dict[str, str] = {}
    found: list[str] = []
    for _, text in frames:
        msg = json.loads(text)
        if msg[0] == 2:
            actions[msg[1]] = msg[2]
            found += violations(msg[2], msg[3], response=False)
        elif msg[0] == 3:
            found += violations(actions.pop(msg[1]), msg[2], response=True)
        else:
            found.append(f"CALLERROR: {text:.300}")
    return found
