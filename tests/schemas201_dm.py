"""Test helper: one 2.0.1 payload judged by its official schema, strictly (closed objects,
RFC 3339 date-times), by name ("NotifyReportRequest"), with tests/scripted_csms201.py's rules."""

from __future__ import annotations

from typing import Any

from tests.scripted_csms201 import strict_violations


def assert_valid(name: str, payload: Any) -> None:
    response = name.endswith("Response")
    action = name.removesuffix("Response") if response else name.removesuffix("Request")
    found = strict_violations(action, payload, response=response)
    assert not found, "\n".join(found)
