"""Test helper: judge OCPP 2.0.1 payloads by the official 2.0.1 JSON schemas, strictly.

The schemas the `ocpp` library ships (ocpp/v201/schemas) are the OCA's, with
additionalProperties false; date-times must be RFC 3339 with an offset, as a strict peer wants.
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
def validator(name: str) -> Draft6Validator:
    """``name``: e.g. "NotifyReportRequest"."""
    text = resources.files("ocpp.v201").joinpath("schemas", f"{name}.json").read_text()
    return Draft6Validator(json.loads(text), format_checker=_FORMATS)


def violations(name: str, payload: Any) -> list[str]:
    return [
        f"{name}: {'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator(name).iter_errors(payload)
    ]


def assert_valid(name: str, payload: Any) -> None:
    found = violations(name, payload)
    assert not found, "\n".join(found)


def frame_violations(frames: list[Any]) -> list[str]:
    """Every violation in OCPP-J 2.0.1 frames (parsed lists), CALLRESULTs matched by id."""
    actions: dict[str, str] = {}
    found: list[str] = []
    for msg in frames:
        if msg[0] == 2:
            actions[msg[1]] = msg[2]
            found += violations(f"{msg[2]}Request", msg[3])
        elif msg[0] == 3 and msg[1] in actions:
            found += violations(f"{actions.pop(msg[1])}Response", msg[2])
    return found
