"""Register maps as data: where a meter keeps each measurand, and how to turn words into numbers.

The Eastron maps follow Eastron's published Modbus protocol documents for the SDM120 and SDM630:
every measurand is an IEEE-754 float32 in two consecutive *input* registers (function code 04),
high word first. Addresses are the 0-based protocol start addresses (document register 30001 is
address 0x0000). A generic meter gets the same shape from the config file.

Measurand names carry their unit (``energy_Wh``, ``power_W`` ...) so a scale in the config says
plainly what it converts to; per-phase values append the phase (``power_W_L1``). Decoding is plain
`struct` work on 16-bit words and needs no Modbus library; the framing itself is pymodbus's.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

PHASES = ("L1", "L2", "L3")
#: Measurands a meter may report in total, with their unit (also the name's suffix).
TOTALS = ("energy_Wh", "power_W", "current_A", "voltage_V", "frequency_Hz")
#: Measurands a three-phase meter may also report per phase.
PER_PHASE = ("energy_Wh", "power_W", "current_A", "voltage_V")
MEASURANDS = (*TOTALS, *(f"{m}_{p}" for m in PER_PHASE for p in PHASES))
#: Measurands that are counters: they must never be reported decreasing.
COUNTERS = ("energy_Wh", *(f"energy_Wh_{p}" for p in PHASES))

#: The Modbus limit for one read of holding/input registers (Modbus application protocol, 6.3/6.4).
MODBUS_MAX_READ = 125


class DataType(StrEnum):
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"

    @property
    def words(self) -> int:
        return _FORMATS[self][1]


_FORMATS: dict[DataType, tuple[str, int]] = {
    DataType.FLOAT32: ("f", 2),
    DataType.FLOAT64: ("d", 4),
    DataType.INT16: ("h", 1),
    DataType.UINT16: ("H", 1),
    DataType.INT32: ("i", 2),
    DataType.UINT32: ("I", 2),
    DataType.INT64: ("q", 4),
    DataType.UINT64: ("Q", 4),
}


class WordOrder(StrEnum):
    BIG = "big"  # high word first (Eastron, most meters)
    LITTLE = "little"  # low word first


FUNCTION_CODES = (3, 4)  # read holding registers, read input registers


@dataclass(frozen=True, slots=True)
class Register:
    """One measurand: where it is and how its words become a number in the name's unit."""

    measurand: str
    address: int
    function: int = 4
    type: DataType = DataType.FLOAT32
    word_order: WordOrder = WordOrder.BIG
    scale: float = 1.0

    @property
    def count(self) -> int:
        return self.type.words

    @property
    def end(self) -> int:
        return self.address + self.count

    def decode(self, words: Sequence[int]) -> float:
        """Words as read (register order) -> value in the measurand's unit."""
        if len(words) != self.count:
            raise ValueError(f"{self.measurand}: expected {self.count} registers, got {len(words)}")
        ordered = list(words) if self.word_order == WordOrder.BIG else list(reversed(words))
        raw = b"".join(w.to_bytes(2, "big") for w in ordered)
        (value,) = struct.unpack(">" + _FORMATS[self.type][0], raw)
        return float(value) * self.scale

    def encode(self, value: float) -> list[int]:
        """The inverse of `decode`, for the meter simulator (and tests of the maps)."""
        code = _FORMATS[self.type][0]
        number = value / self.scale
        packed = struct.pack(">" + code, number if code in "fd" else round(number))
        words = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, len(packed), 2)]
        return words if self.word_order == WordOrder.BIG else list(reversed(words))


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: `count` registers from `address` with `function`."""

    function: int
    address: int
    count: int
    registers: tuple[Register, ...]

    @property
    def request_bytes(self) -> int:
        """RTU frame size of the request: unit, function, address, count, CRC."""
        return 8

    @property
    def response_bytes(self) -> int:
        """RTU frame size of a normal response: unit, function, byte count, data, CRC."""
        return 5 + 2 * self.count

    def decode(self, words: Sequence[int]) -> dict[str, float]:
        if len(words) != self.count:
            raise ValueError(f"expected {self.count} registers, got {len(words)}")
        return {
            r.measurand: r.decode(words[r.address - self.address : r.end - self.address])
            for r in self.registers
        }


@dataclass(frozen=True, slots=True)
class RegisterMap:
    """A meter model's measurands, and the reads that fetch them all in one poll."""

    name: str
    registers: tuple[Register, ...]
    #: Largest read the meter accepts, in registers.
    max_read: int = MODBUS_MAX_READ
    #: Unused registers worth reading to save a request (0: only merge adjacent registers).
    max_gap: int = 0

    def __post_init__(self) -> None:
        names = [r.measurand for r in self.registers]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: a measurand appears twice")
        if "energy_Wh" not in names:
            raise ValueError(f"{self.name}: energy_Wh is required (meterStart/meterStop)")
        for r in self.registers:
            if r.measurand not in MEASURANDS:
                raise ValueError(f"{self.name}: unknown measurand {r.measurand!r}")
            if r.count > self.max_read:
                raise ValueError(f"{self.name}: {r.measurand} is wider than one read")

    @property
    def measurands(self) -> tuple[str, ...]:
        return tuple(r.measurand for r in self.registers)

    @property
    def three_phase(self) -> bool:
        return any(m.endswith(PHASES) for m in self.measurands)

    @property
    def blocks(self) -> tuple[Block, ...]:
        """Group registers into as few reads as the meter allows.

        A request costs its own frames (8 bytes out, 5 bytes of response overhead), two silent
        intervals of 3.5 characters and the meter's turnaround; reading a few unused registers
        in between is cheaper than that, up to `max_gap`.
        """
        return _plan(self.registers, self.max_read, self.max_gap)

    def decode(self, words_per_block: Iterable[Sequence[int]]) -> dict[str, float]:
        values: dict[str, float] = {}
        for block, words in zip(self.blocks, words_per_block, strict=True):
            values.update(block.decode(words))
        return values


def _plan(registers: Iterable[Register], max_read: int, max_gap: int) -> tuple[Block, ...]:
    blocks: list[Block] = []
    by_function: dict[int, list[Register]] = {}
    for r in registers:
        by_function.setdefault(r.function, []).append(r)
    for function in sorted(by_function):
        current: list[Register] = []
        for r in sorted(by_function[function], key=lambda r: r.address):
            if current:
                start = current[0].address
                end = max(x.end for x in current)
                if r.address - end <= max_gap and max(end, r.end) - start <= max_read:
                    current.append(r)
                    continue
                blocks.append(_block(function, current))
            current = [r]
        if current:
            blocks.append(_block(function, current))
    return tuple(blocks)


def _block(function: int, registers: list[Register]) -> Block:
    start = registers[0].address
    end = max(r.end for r in registers)
    return Block(function, start, end - start, tuple(registers))


def _eastron(measurand: str, address: int, scale: float = 1.0) -> Register:
    return Register(measurand, address, 4, DataType.FLOAT32, WordOrder.BIG, scale)


_KWH = 1000.0  # Eastron energy registers count kWh; ours count Wh

#: Eastron SDM120-Modbus (single phase). Document registers in the comments.
SDM120 = RegisterMap(
    "sdm120",
    (
        _eastron("voltage_V", 0x0000),  # 30001 Voltage
        _eastron("current_A", 0x0006),  # 30007 Current
        _eastron("power_W", 0x000C),  # 30013 Active power
        _eastron("frequency_Hz", 0x0046),  # 30071 Frequency
        _eastron("energy_Wh", 0x0048, _KWH),  # 30073 Import active energy
    ),
    # Eastron limits one request to 40 parameters (80 registers); unlisted registers in between
    # read as zero, so one request for the first 74 registers beats two.
    max_read=80,
    max_gap=64,
)

#: Eastron SDM630-Modbus (three phase, 3p4w). Document registers in the comments.
SDM630 = RegisterMap(
    "sdm630",
    (
        _eastron("voltage_V_L1", 0x0000),  # 30001 Phase 1 line to neutral volts
        _eastron("voltage_V_L2", 0x0002),  # 30003 Phase 2 line to neutral volts
        _eastron("voltage_V_L3", 0x0004),  # 30005 Phase 3 line to neutral volts
        _eastron("current_A_L1", 0x0006),  # 30007 Phase 1 current
        _eastron("current_A_L2", 0x0008),  # 30009 Phase 2 current
        _eastron("current_A_L3", 0x000A),  # 30011 Phase 3 current
        _eastron("power_W_L1", 0x000C),  # 30013 Phase 1 power
        _eastron("power_W_L2", 0x000E),  # 30015 Phase 2 power
        _eastron("power_W_L3", 0x0010),  # 30017 Phase 3 power
        _eastron("voltage_V", 0x002A),  # 30043 Average line to neutral volts
        _eastron("current_A", 0x002E),  # 30047 Average line current
        _eastron("power_W", 0x0034),  # 30053 Total system power
        _eastron("frequency_Hz", 0x0046),  # 30071 Frequency of supply voltages
        _eastron("energy_Wh", 0x0048, _KWH),  # 30073 Total import kWh
        _eastron("energy_Wh_L1", 0x015A, _KWH),  # 30347 L1 import kWh
        _eastron("energy_Wh_L2", 0x015C, _KWH),  # 30349 L2 import kWh
        _eastron("energy_Wh_L3", 0x015E, _KWH),  # 30351 L3 import kWh
    ),
    max_read=80,
    max_gap=64,
)

#: Built-in maps by config `kind`.
KNOWN_MAPS: Mapping[str, RegisterMap] = {m.name: m for m in (SDM120, SDM630)}


def units_of(measurand: str) -> str:
    """'power_W_L1' -> 'W'."""
    base = measurand.rsplit("_", 1)[0] if measurand.endswith(PHASES) else measurand
    return base.rsplit("_", 1)[1]


def split_phase(measurand: str) -> tuple[str, str | None]:
    """'power_W_L1' -> ('power_W', 'L1'); 'power_W' -> ('power_W', None)."""
    if measurand.endswith(PHASES):
        base, phase = measurand.rsplit("_", 1)
        return base, phase
    return measurand, None
