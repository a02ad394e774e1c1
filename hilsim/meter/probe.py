"""`hilsim meter probe`: read a meter once and show everything it said.

The point is the first minutes at a bench: wiring (A/B swapped), baud rate, parity and unit id all
fail the same way on RS-485 (silence), so the probe says which measurands came back with which
units, or names the problem and what to check, and exits non-zero.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from hilsim.errors import ConfigError, MeterError
from hilsim.meter.config import BAUDRATES, PARITIES, STOPBITS, MeterSettings
from hilsim.meter.registers import KNOWN_MAPS, MEASURANDS, split_phase, units_of


@dataclass(frozen=True, slots=True)
class ProbeResult:
    settings: MeterSettings
    values: dict[str, float]
    elapsed_s: float
    requests: int

    def lines(self) -> list[str]:
        s = self.settings
        head = (
            f"{s.description}: answered {self.requests} request(s) "
            f"in {self.elapsed_s * 1000:.0f} ms"
        )
        rows = []
        for name in sorted(s.register_map.measurands, key=_order):
            base, phase = split_phase(name)
            label = base.rsplit("_", 1)[0] + (f" {phase}" if phase else "")
            unit = units_of(name)
            digits = 2 if unit in ("A", "Hz") else 1
            rows.append(f"  {label:<14}{self.values[name]:>14.{digits}f} {unit}")
        return [head, *rows]


async def probe(settings: MeterSettings) -> ProbeResult:
    """Read every register of the map once; raises MeterError saying what went wrong."""
    from hilsim.meter.modbus import ModbusLink

    link = ModbusLink(settings)
    link.acquire()
    started = time.perf_counter()
    try:
        values = await link.read(settings.unit_id, settings.register_map)
    except MeterError as exc:
        raise MeterError(f"no meter read: {settings.description}: {exc}") from None
    finally:
        link.release()
    return ProbeResult(
        settings, values, time.perf_counter() - started, len(settings.register_map.blocks)
    )


def _order(measurand: str) -> tuple[int, str]:
    """Totals before phases, in the order energy, power, current, voltage, frequency."""
    base, phase = split_phase(measurand)
    return MEASURANDS.index(base), phase or ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`hilsim meter probe` options; each overrides the configured meter's when both are given."""
    parser.add_argument("--port", help="serial device of the RS-485 adapter, e.g. /dev/ttyUSB0")
    parser.add_argument(
        "--kind",
        choices=sorted(KNOWN_MAPS),
        help="meter model (default sdm630, or the configured meter's)",
    )
    parser.add_argument("--baudrate", type=int, choices=BAUDRATES, help="default 9600")
    parser.add_argument("--parity", choices=PARITIES, help="N, E or O (default N)")
    parser.add_argument("--stopbits", type=int, choices=STOPBITS, help="default 1")
    parser.add_argument("--unit-id", type=int, help="Modbus unit id, 1..247 (default 1)")
    parser.add_argument(
        "--timeout", type=float, help="seconds to wait for each answer (default 1.0)"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,  # also before `probe` or `meter` (hilsim.cli); None if not
        help="take the meter of --connector from this configuration file (also generic meters)",
    )
    parser.add_argument(
        "--connector", type=int, default=1, help="with --config: whose meter (default 1)"
    )


async def run(args: argparse.Namespace) -> int:
    result = await probe(settings_from_arguments(args))
    print("\n".join(result.lines()))
    return 0


def settings_from_arguments(args: argparse.Namespace) -> MeterSettings:
    """The meter to probe: the configured one (with --config), else a built-in kind."""
    base: MeterSettings | None = None
    if args.config is not None:
        from hilsim.config import load_settings
        from hilsim.meter.config import meter_settings

        settings = load_settings(args.config)
        base = meter_settings(settings).get(args.connector)
        if base is None:
            raise ConfigError(
                settings.source,
                "connector",
                f"expected connector {args.connector} to have a Modbus [connector.meter] table",
            )
    kind = args.kind or (base.kind if base else "sdm630")
    port = args.port or (base.port if base else None)
    if not port:
        raise MeterError("meter probe: --port is required (or --config with a meter)")
    unit_id = args.unit_id if args.unit_id is not None else (base.unit_id if base else 1)
    if not 1 <= unit_id <= 247:
        raise MeterError(f"meter probe: --unit-id must be 1..247, got {unit_id}")
    timeout = args.timeout if args.timeout is not None else (base.timeout_s if base else 1.0)
    if not 0 < timeout <= 60:
        raise MeterError(f"meter probe: --timeout must be 0..60 s, got {timeout:g}")
    same_kind = base is not None and kind == base.kind
    register_map = base.register_map if base is not None and same_kind else KNOWN_MAPS[kind]
    return MeterSettings(
        kind=kind,
        port=port,
        register_map=register_map,
        baudrate=args.baudrate or (base.baudrate if base else 9600),
        parity=args.parity or (base.parity if base else "N"),
        stopbits=args.stopbits or (base.stopbits if base else 1),
        unit_id=unit_id,
        timeout_s=timeout,
    )
