"""GetVariables and SetVariables in OCPP 2.0.1's wire form: one result per requested item, the
request's component and variable echoed as sent (OCPP 2.0.1 B06/B05)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from hilsim.device_model.report import clipped
from hilsim.device_model.service import DeviceModel, Outcome
from hilsim.device_model.variables import Component

log = logging.getLogger(__name__)


def _names(item: Mapping[str, Any]) -> tuple[Component, str, str | None, str]:
    variable = item["variable"]
    instance = variable.get("instance")
    return (
        Component.from_wire(item["component"]),
        str(variable["name"]),
        None if instance is None else str(instance),
        str(item.get("attributeType", "Actual")),
    )


def _result(item: Mapping[str, Any], outcome: Outcome) -> dict[str, Any]:
    result: dict[str, Any] = {
        "attributeStatus": outcome.status,
        "component": item["component"],
        "variable": item["variable"],
    }
    if "attributeType" in item:
        result["attributeType"] = item["attributeType"]
    info = outcome.status_info()
    if info is not None:
        result["attributeStatusInfo"] = info
    return result


def get_variables(model: DeviceModel, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """GetVariablesResponse.getVariableResult for GetVariablesRequest.getVariableData."""
    results = []
    for item in items:
        component, name, instance, attribute = _names(item)
        outcome = model.get(component, name, instance, attribute)
        result = _result(item, outcome)
        if outcome.value is not None:
            result["attributeValue"] = clipped(outcome.value)
        results.append(result)
    return results


async def set_variables(
    model: DeviceModel, items: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """SetVariablesResponse.setVariableResult for SetVariablesRequest.setVariableData, each
    item validated, persisted and applied in the order given."""
    results = []
    for item in items:
        component, name, instance, attribute = _names(item)
        outcome = await model.set(component, name, str(item["attributeValue"]), instance,
                                  attribute)  # fmt: skip
        results.append(_result(item, outcome))
    return results
