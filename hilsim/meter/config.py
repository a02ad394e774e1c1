"""The `[connector.meter]` tables: which meter measures each connector, and how to reach it.

The core config parser lets these tables through untouched (`Settings.raw`); they are validated
here, completely and before anything opens a port, so a typo is one line naming the file, the
dotted key (`connector[1].meter.baudrate`, counting tables in file order like the core parser)
and what was expected.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from hilsim.config import Settings, describe_value
from hilsim.errors import ConfigError
from hilsim.meter import meter_tables
from hilsim.meter.base import MeterSource

if TYPE_CHECKING:
    # The register maps load with the first Modbus meter table: a run without one (the
    # synthetic meter) does not pay for them at every start.
    from hilsim.meter.registers import Register, RegisterMap

KINDS = ("synthetic", "sdm120", "sdm630", "generic")
BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
PARITIES = ("N", "E", "O")
STOPBITS = (1, 2)

_MODBUS_KEYS = (
    "kind",
    "port",
    "baudrate",
    "parity",
    "stopbits",
    "unit_id",
    "poll_interval_s",
    "timeout_s",
    "fault_after_s",
    "retry_max_s",
)
_REGISTER_KEYS = ("function", "address", "type", "word_order", "scale")


@dataclass(frozen=True, slots=True)
class MeterSettings:
    """One Modbus meter on an RS-485 line."""

    kind: str
    port: str
    register_map: RegisterMap
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    unit_id: int = 1
    poll_interval_s: float = 1.0
    timeout_s: float = 1.0  # how long one request waits for its answer
    fault_after_s: float = 10.0  # failing this long faults the connector (PowerMeterFailure)
    retry_max_s: float = 10.0  # backoff cap between retries of a failing meter
    connector_id: int = field(default=0, compare=False)

    @property
    def line(self) -> str:
        """'9600 8N1', as printed on meters and adapters."""
        return f"{self.baudrate} 8{self.parity}{self.stopbits}"

    @property
    def description(self) -> str:
        return f"{self.kind} at {self.port} ({self.line}, unit {self.unit_id})"


def meter_settings(settings: Settings) -> dict[int, MeterSettings]:
    """Connector id -> its Modbus meter; connectors without one (or synthetic) are absent."""
    connectors = settings.raw.get("connector") or ()
    found: dict[int, MeterSettings] = {}
    where: dict[tuple[str, int], str] = {}
    lines: dict[str, tuple[str, MeterSettings]] = {}
    for n, table in meter_tables(settings):
        prefix = f"connector[{n}].meter"
        parsed = parse_meter(table, settings.source, prefix)
        if parsed is None:
            continue
        cid = int(connectors[n - 1]["id"])
        parsed = replace(parsed, connector_id=cid)
        bus = (parsed.port, parsed.unit_id)
        if bus in where:
            raise ConfigError(
                settings.source,
                f"{prefix}.unit_id",
                f"expected a unit id not already used on {parsed.port} by {where[bus]}, "
                f"got {parsed.unit_id}",
            )
        where[bus] = prefix
        if parsed.port in lines and lines[parsed.port][1].line != parsed.line:
            other, first = lines[parsed.port]
            raise ConfigError(
                settings.source,
                prefix,
                f"expected the same line settings as {other} on the shared port {parsed.port} "
                f"({first.line}), got {parsed.line}",
            )
        lines.setdefault(parsed.port, (prefix, parsed))
        found[cid] = parsed
    return found


def parse_meter(table: Any, source: str, prefix: str) -> MeterSettings | None:
    """Validate one meter table; None for `kind = "synthetic"`."""
    p = _Checker(source, prefix)
    if not isinstance(table, Mapping):
        raise p.error(None, f"expected a table ([connector.meter]), got {describe_value(table)}")
    if "kind" not in table:
        raise p.error("kind", f"missing key; expected one of {', '.join(KINDS)}")
    kind = table["kind"]
    if kind not in KINDS:
        raise p.error("kind", f"expected one of {', '.join(KINDS)}, got {describe_value(kind)}")
    if kind == "synthetic":
        p.check_keys(table, ("kind",), why='for kind = "synthetic" (it has no port)')
        return None
    known = (*_MODBUS_KEYS, "registers") if kind == "generic" else _MODBUS_KEYS
    p.check_keys(table, known)
    port = table.get("port")
    if not isinstance(port, str) or not port.strip():
        got = "missing key" if port is None else f"got {describe_value(port)}"
        raise p.error("port", f"expected the serial device, e.g. '/dev/ttyUSB0'; {got}")
    baudrate = p.choice(table, "baudrate", BAUDRATES, 9600)
    parity = p.choice(table, "parity", PARITIES, "N")
    stopbits = p.choice(table, "stopbits", STOPBITS, 1)
    unit_id = p.integer(table, "unit_id", 1, 1, 247)
    poll = p.seconds(table, "poll_interval_s", 1.0, 0.05, 3600.0)
    timeout = p.seconds(table, "timeout_s", 1.0, 0.01, 60.0)
    fault_after = p.seconds(table, "fault_after_s", 10.0, 0.0, 86400.0)
    retry_max = p.seconds(table, "retry_max_s", max(10.0, poll), poll, 3600.0)
    from hilsim.meter.registers import KNOWN_MAPS

    if kind == "generic":
        if "registers" not in table:
            raise p.error(
                "registers",
                "missing table; a generic meter needs [connector.meter.registers] with at least "
                "energy_Wh = { address = ... }",
            )
        register_map = p.register_map(table["registers"])
    else:
        register_map = KNOWN_MAPS[kind]
    return MeterSettings(
        kind=kind,
        port=port,
        register_map=register_map,
        baudrate=baudrate,
        parity=parity,
        stopbits=stopbits,
        unit_id=unit_id,
        poll_interval_s=poll,
        timeout_s=timeout,
        fault_after_s=fault_after,
        retry_max_s=retry_max,
    )


def build_meters(
    configured: Mapping[int, MeterSettings],
    *,
    registers: Mapping[int, float] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[int, MeterSource]:
    """The meter source of every connector that has a Modbus meter (see `meter_settings`).

    `registers`: the energy register last reported per connector (the store's), below which a
    meter reset or swapped while the service was stopped must not take the reported register.

    Meters sharing a port share one Modbus link (one RS-485 bus, several unit ids). pymodbus is
    imported only here, only when a Modbus meter is configured: a plain run starts faster.
    """
    if not configured:
        return {}
    from hilsim.meter.modbus import ModbusLink, ModbusMeter

    links: dict[str, ModbusLink] = {}
    meters: dict[int, MeterSource] = {}
    for cid, ms in configured.items():
        link = links.get(ms.port)
        if link is None:
            link = links[ms.port] = ModbusLink(ms)
        floor = (registers or {}).get(cid, 0.0)
        meters[cid] = ModbusMeter(ms, link, name=f"C{cid} meter", floor_Wh=floor, clock=clock)
    return meters


class _Checker:
    def __init__(self, source: str, prefix: str) -> None:
        self.source = source
        self.prefix = prefix

    def error(self, key: str | None, expected: str) -> ConfigError:
        return ConfigError(self.source, f"{self.prefix}.{key}" if key else self.prefix, expected)

    def check_keys(self, table: Mapping[str, Any], known: tuple[str, ...], why: str = "") -> None:
        for key in table:
            if key not in known:
                tail = f" {why}" if why else ""
                raise self.error(key, f"unknown key{tail}; known keys are: {', '.join(known)}")

    def choice(
        self, table: Mapping[str, Any], key: str, options: tuple[Any, ...], default: Any
    ) -> Any:
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, bool) or value not in options:
            shown = ", ".join(str(o) for o in options)
            raise self.error(key, f"expected one of {shown}, got {describe_value(value)}")
        return value

    def integer(self, table: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
        if key not in table:
            return default
        value = table[key]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.error(
                key, f"expected an integer from {low} to {high}, got {describe_value(value)}"
            )
        return value

    def seconds(
        self, table: Mapping[str, Any], key: str, default: float, low: float, high: float
    ) -> float:
        if key not in table:
            return default
        value = table[key]
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or not low <= value <= high
        ):
            raise self.error(
                key, f"expected seconds from {low:g} to {high:g}, got {describe_value(value)}"
            )
        return float(value)

    def register_map(self, table: Any) -> RegisterMap:
        from hilsim.meter.registers import MEASURANDS, RegisterMap

        if not isinstance(table, Mapping):
            raise self.error("registers", f"expected a table, got {describe_value(table)}")
        registers: list[Register] = []
        for measurand, spec in table.items():
            if measurand not in MEASURANDS:
                raise self.error(
                    f"registers.{measurand}",
                    f"unknown measurand; known measurands are: {', '.join(MEASURANDS)}",
                )
            registers.append(self.register(measurand, spec))
        if not any(r.measurand == "energy_Wh" for r in registers):
            raise self.error(
                "registers.energy_Wh",
                "missing; expected the energy register (meterStart/meterStop come from it), "
                "e.g. energy_Wh = { address = 0x0048, scale = 1000.0 }",
            )
        return RegisterMap("generic", tuple(registers))

    def register(self, measurand: str, spec: Any) -> Register:
        from hilsim.meter.registers import FUNCTION_CODES, DataType, Register, WordOrder

        key = f"registers.{measurand}"
        if not isinstance(spec, Mapping):
            raise self.error(
                key,
                f'expected an inline table such as {{ address = 0, type = "float32" }}, '
                f"got {describe_value(spec)}",
            )
        for k in spec:
            if k not in _REGISTER_KEYS:
                raise self.error(
                    f"{key}.{k}", f"unknown key; known keys are: {', '.join(_REGISTER_KEYS)}"
                )
        if "address" not in spec:
            raise self.error(f"{key}.address", "missing key; expected an integer from 0 to 65535")
        address = spec["address"]
        if not isinstance(address, int) or isinstance(address, bool) or not 0 <= address <= 65535:
            raise self.error(
                f"{key}.address",
                f"expected an integer from 0 to 65535, got {describe_value(address)}",
            )
        function = spec.get("function", 4)
        if isinstance(function, bool) or function not in FUNCTION_CODES:
            raise self.error(
                f"{key}.function",
                "expected 3 (holding registers) or 4 (input registers), "
                f"got {describe_value(function)}",
            )
        type_ = spec.get("type", "float32")
        if type_ not in {t.value for t in DataType}:
            raise self.error(
                f"{key}.type",
                f"expected one of {', '.join(t.value for t in DataType)}, "
                f"got {describe_value(type_)}",
            )
        order = spec.get("word_order", "big")
        if order not in {w.value for w in WordOrder}:
            raise self.error(
                f"{key}.word_order",
                f"expected 'big' (high word first) or 'little' (low word first), "
                f"got {describe_value(order)}",
            )
        scale = spec.get("scale", 1.0)
        if (
            not isinstance(scale, int | float)
            or isinstance(scale, bool)
            or not math.isfinite(scale)
            or scale == 0
        ):
            raise self.error(
                f"{key}.scale",
                f"expected a non-zero number (register value x scale = {measurand}), "
                f"got {describe_value(scale)}",
            )
        dtype = DataType(type_)
        if address + dtype.words > 65536:
            raise self.error(f"{key}.address", f"expected {dtype} to fit below 65536")
        return Register(measurand, address, function, dtype, WordOrder(order), float(scale))
