"""The device model in OCPP 2.0.1's wire form: ReportData for NotifyReport, EventData for
NotifyEvent, and reports cut to DeviceDataCtrlr.ItemsPerMessage.

Kept apart from `hilsim.device_model.service` so the service answers in values and statuses, and
the shape of a payload is decided in one place. Everything here is plain dicts that validate
against the official 2.0.1 schemas (no customData, no empty strings where a field is optional).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from hilsim.device_model.variables import (
    REPORTING_VALUE_SIZE,
    Attribute,
    DataType,
    Mutability,
    Variable,
)

log = logging.getLogger(__name__)


class ReportBase(StrEnum):
    """GetBaseReport's reportBase."""

    full = "FullInventory"
    configuration = "ConfigurationInventory"
    summary = "SummaryInventory"


#: The variables a SummaryInventory reports (OCPP 2.0.1 B07: availability and problems).
SUMMARY_VARIABLES = frozenset({"AvailabilityState", "Available", "Problem"})


def in_report(variable: Variable, base: ReportBase) -> bool:
    """Whether a report of this base lists the variable."""
    if base == ReportBase.configuration:
        return variable.mutability != Mutability.read_only
    if base == ReportBase.summary:
        return variable.name in SUMMARY_VARIABLES
    return True


@dataclass(frozen=True, slots=True)
class Limits:
    """A variable's characteristics as in effect (a 1.6 key may supply them)."""

    min_limit: float | None
    max_limit: float | None
    values_list: tuple[str, ...]


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def characteristics(variable: Variable, limits: Limits) -> dict[str, Any]:
    """VariableCharacteristicsType."""
    data: dict[str, Any] = {"dataType": str(variable.data_type), "supportsMonitoring": False}
    if variable.unit is not None:
        data["unit"] = variable.unit
    if limits.min_limit is not None:
        data["minLimit"] = _number(limits.min_limit)
    if limits.max_limit is not None:
        data["maxLimit"] = _number(limits.max_limit)
    lists = (DataType.option_list, DataType.member_list, DataType.sequence_list)
    if variable.data_type in lists and limits.values_list:
        data["valuesList"] = ",".join(limits.values_list)[:1000]
    return data


def clipped(value: str) -> str:
    """ReportingValueSize: a longer value is cut (and said so in the log)."""
    if len(value) > REPORTING_VALUE_SIZE:
        log.warning("value of %d characters cut to %d", len(value), REPORTING_VALUE_SIZE)
        return value[:REPORTING_VALUE_SIZE]
    return value


def variable_wire(variable: Variable) -> dict[str, Any]:
    """VariableType."""
    data: dict[str, Any] = {"name": variable.name}
    if variable.instance is not None:
        data["instance"] = variable.instance
    return data


def report_data(
    variable: Variable,
    values: Sequence[tuple[Attribute, str | None]],
    limits: Limits,
) -> dict[str, Any]:
    """ReportDataType: one variable with each attribute's value (None: write-only, not shown)."""
    attributes = []
    for kind, value in values:
        extra = kind != Attribute.actual
        mutability = Mutability.read_only if extra else variable.mutability
        attribute: dict[str, Any] = {
            "type": str(kind),
            "mutability": str(mutability),
            "persistent": variable.live is None or extra,
            "constant": extra or variable.constant,
        }
        if value is not None and mutability != Mutability.write_only:
            attribute["value"] = clipped(value)
        attributes.append(attribute)
    return {
        "component": variable.component.wire(),
        "variable": variable_wire(variable),
        "variableAttribute": attributes,
        "variableCharacteristics": characteristics(variable, limits),
    }


def event_data(variable: Variable, value: str, event_id: int, timestamp: str) -> dict[str, Any]:
    """EventDataType for a variable whose Actual value changed without a monitor: a
    HardWiredNotification of trigger Delta (OCPP 2.0.1 N07)."""
    return {
        "eventId": event_id,
        "timestamp": timestamp,
        "trigger": "Delta",
        "actualValue": clipped(value),
        "eventNotificationType": "HardWiredNotification",
        "component": variable.component.wire(),
        "variable": variable_wire(variable),
    }


def chunks(items: Sequence[dict[str, Any]], per_message: int) -> list[list[dict[str, Any]]]:
    """A report cut into NotifyReport-sized pieces (at least one item each; none for none)."""
    size = max(1, per_message)
    return [list(items[start : start + size]) for start in range(0, len(items), size)]
