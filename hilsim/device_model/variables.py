"""One OCPP 2.0.1 device-model variable's description (`Variable`) and the rules for its values.

A variable is addressed by its component (name, instance, EVSE, connector) and its own name and
instance, as OCPP 2.0.1 Part 2 (appendix "Standardized components and variables") names them.
Where its value comes from is said once here: a 1.6 configuration key (`key`, with a `Codec` for
text forms that differ), the charger's live state (`live`), or the device_variable table (the
2.0.1-only ones, with a `default`). The checks of a SetVariables value that depend only on the
description (data type, limits, values list) live here, so they are read and tested in one place.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

#: ConfigurationValueSize: the longest value SetVariables may carry (SetVariableDataType's bound).
VALUE_SIZE = 1000
#: ReportingValueSize: the longest value a report, GetVariables or NotifyEvent carries.
REPORTING_VALUE_SIZE = 2500

_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


class Mutability(StrEnum):
    read_only = "ReadOnly"
    read_write = "ReadWrite"
    write_only = "WriteOnly"


class DataType(StrEnum):
    string = "string"
    decimal = "decimal"
    integer = "integer"
    date_time = "dateTime"
    boolean = "boolean"
    option_list = "OptionList"
    sequence_list = "SequenceList"
    member_list = "MemberList"


class Attribute(StrEnum):
    actual = "Actual"
    target = "Target"
    min_set = "MinSet"
    max_set = "MaxSet"


@dataclass(frozen=True, slots=True)
class Component:
    """A component's address; None: no instance, not on an EVSE, not on a connector."""

    name: str
    instance: str | None = None
    evse: int | None = None
    connector: int | None = None

    @classmethod
    def from_wire(cls, data: Mapping[str, object]) -> Component:
        """From a ComponentType dict (schema-valid: name present, evse.id an integer)."""
        evse = data.get("evse")
        evse_id = connector = None
        if isinstance(evse, Mapping):
            evse_id = int(evse["id"])
            if evse.get("connectorId") is not None:
                connector = int(evse["connectorId"])
        instance = data.get("instance")
        return cls(str(data["name"]), None if instance is None else str(instance), evse_id,
                   connector)  # fmt: skip

    def wire(self) -> dict[str, object]:
        """As a ComponentType dict."""
        data: dict[str, object] = {"name": self.name}
        if self.instance is not None:
            data["instance"] = self.instance
        if self.evse is not None:
            evse: dict[str, int] = {"id": self.evse}
            if self.connector is not None:
                evse["connectorId"] = self.connector
            data["evse"] = evse
        return data


@dataclass(frozen=True, slots=True)
class Codec:
    """Between a variable's 2.0.1 text and its 1.6 key's text, where the two forms differ."""

    to_key: Callable[[str], str]
    from_key: Callable[[str], str]


def _same(text: str) -> str:
    return text


SAME = Codec(_same, _same)


@dataclass(frozen=True, slots=True)
class Variable:
    """One variable of one component: its characteristics, and where its value lives."""

    component: Component
    name: str
    data_type: DataType
    mutability: Mutability = Mutability.read_write
    instance: str | None = None
    #: A stored variable's value until one is set; a constant's value; a live one's fallback.
    default: str = ""
    #: The OCPP 1.6 configuration key this variable is (read and written through it).
    key: str | None = None
    codec: Codec = SAME
    #: The name of the live source (`DeviceModel`'s ``live``) the Actual value is read from.
    live: str | None = None
    unit: str | None = None
    min_limit: float | None = None
    max_limit: float | None = None
    #: The 1.6 key whose value is this variable's maxLimit (LocalAuthListCtrlr.Entries).
    max_limit_key: str | None = None
    values_list: tuple[str, ...] = ()
    #: A MemberList/SequenceList that may not be empty (TxStartPoint: a transaction must start).
    non_empty: bool = False
    #: Other attributes than Actual, as (type, constant value): EVSE.Power's MaxSet.
    extra: tuple[tuple[Attribute, str], ...] = field(default=())
    #: A SetVariables of it takes effect after a reboot only.
    reboot_required: bool = False

    @property
    def stored(self) -> bool:
        """Kept in device_variable: not a 1.6 key, not live, and writable."""
        return self.key is None and self.live is None and self.mutability != Mutability.read_only

    @property
    def constant(self) -> bool:
        return self.key is None and self.live is None and self.mutability == Mutability.read_only

    @property
    def attributes(self) -> tuple[Attribute, ...]:
        return (Attribute.actual, *(kind for kind, _ in self.extra))

    def label(self) -> str:
        """Component.Variable[instance] for log lines and reasons."""
        where = self.component.name
        if self.component.instance:
            where += f"[{self.component.instance}]"
        if self.component.evse is not None:
            where += f"(evse {self.component.evse}"
            if self.component.connector is not None:
                where += f", connector {self.component.connector}"
            where += ")"
        name = f"{self.name}[{self.instance}]" if self.instance else self.name
        return f"{where}.{name}"

    def check(
        self,
        text: str,
        *,
        min_limit: float | None = None,
        max_limit: float | None = None,
        values_list: tuple[str, ...] | None = None,
    ) -> str:
        """The value normalised (a list's spaces dropped), or ValueError(reasonCode, info).

        The limits and values list default to the variable's own; the service passes those a
        1.6 key gives instead. A write-only variable's value never appears in the reason.
        """
        low = self.min_limit if min_limit is None else min_limit
        high = self.max_limit if max_limit is None else max_limit
        allowed = self.values_list if values_list is None else values_list
        if len(text) > VALUE_SIZE:
            raise ValueError("TooLargeElement", f"at most {VALUE_SIZE} characters")
        shown = "(not shown)" if self.mutability == Mutability.write_only else repr(text)
        kind = self.data_type
        if kind == DataType.boolean:
            if text not in ("true", "false"):
                raise ValueError("InvalidValue", f"expected true or false, got {shown}")
            return text
        if kind in (DataType.integer, DataType.decimal):
            pattern = _INTEGER if kind == DataType.integer else _DECIMAL
            if not pattern.fullmatch(text):
                raise ValueError("InvalidValue", f"expected {kind}, got {shown}")
            number = float(text)
            if not math.isfinite(number):
                raise ValueError("InvalidValue", f"expected a finite number, got {shown}")
            if low is not None and number < low:
                raise ValueError("ValueTooLow", f"at least {_number(low)}, got {shown}")
            if high is not None and number > high:
                raise ValueError("ValueTooHigh", f"at most {_number(high)}, got {shown}")
            return str(int(text)) if kind == DataType.integer else text
        if kind == DataType.date_time:
            try:
                stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError("InvalidValue", f"expected a date-time, got {shown}") from None
            if stamp.tzinfo is None:
                raise ValueError("InvalidValue", f"expected a date-time with offset, got {shown}")
            return text
        if kind == DataType.option_list:
            if text not in allowed:
                raise ValueError("InvalidValue", f"expected one of {','.join(allowed)}")
            return text
        if kind in (DataType.member_list, DataType.sequence_list):
            return self._check_list(text, allowed, high)
        if high is not None and len(text) > high:
            raise ValueError("TooLargeElement", f"at most {_number(high)} characters")
        if low is not None and len(text) < low:
            raise ValueError("InvalidValue", f"at least {_number(low)} characters")
        return text

    def _check_list(self, text: str, allowed: tuple[str, ...], high: float | None) -> str:
        items = [item.strip() for item in text.split(",")] if text.strip() else []
        if any(not item for item in items):
            raise ValueError("InvalidValue", "expected a comma-separated list without gaps")
        if not items and self.non_empty:
            raise ValueError("InvalidValue", "expected at least one member")
        for item in items:
            if allowed and item not in allowed:
                raise ValueError("InvalidValue", f"{item!r} is not one of {','.join(allowed)}")
        if len(set(items)) != len(items):
            raise ValueError("InvalidValue", "expected each member once")
        joined = ",".join(items)
        if high is not None and len(joined) > high:
            raise ValueError("TooLargeElement", f"at most {_number(high)} characters")
        return joined


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)
