"""Register maps as data: Eastron's documented addresses, IEEE-754 words, and the reads planned."""

from __future__ import annotations

import math
import struct

import pytest

from hilsim.meter.registers import (
    MODBUS_MAX_READ,
    SDM120,
    SDM630,
    DataType,
    Register,
    RegisterMap,
    WordOrder,
    split_phase,
    units_of,
)

# Eastron's protocol documents number input registers from 30001; the protocol address is n-30001.
SDM630_DOCUMENT = {
    "voltage_V_L1": 30001,
    "voltage_V_L2": 30003,
    "voltage_V_L3": 30005,
    "current_A_L1": 30007,
    "current_A_L2": 30009,
    "current_A_L3": 30011,
    "power_W_L1": 30013,
    "power_W_L2": 30015,
    "power_W_L3": 30017,
    "voltage_V": 30043,
    "current_A": 30047,
    "power_W": 30053,
    "frequency_Hz": 30071,
    "energy_Wh": 30073,
    "energy_Wh_L1": 30347,
    "energy_Wh_L2": 30349,
    "energy_Wh_L3": 30351,
}
SDM120_DOCUMENT = {
    "voltage_V": 30001,
    "current_A": 30007,
    "power_W": 30013,
    "frequency_Hz": 30071,
    "energy_Wh": 30073,
}


@pytest.mark.parametrize(
    ("register_map", "document"), [(SDM630, SDM630_DOCUMENT), (SDM120, SDM120_DOCUMENT)]
)
def test_eastron_maps_follow_the_protocol_documents(
    register_map: RegisterMap, document: dict[str, int]
) -> None:
    assert {r.measurand: r.address + 30001 for r in register_map.registers} == document
    for r in register_map.registers:
        assert (r.function, r.type, r.word_order) == (4, DataType.FLOAT32, WordOrder.BIG)
        # Eastron energy registers count kWh; every other one is in the measurand's own unit.
        assert r.scale == (1000.0 if r.measurand.startswith("energy_Wh") else 1.0)


def test_sdm630_is_read_in_two_requests_within_eastrons_limit() -> None:
    blocks = SDM630.blocks
    assert [(b.function, b.address, b.count) for b in blocks] == [(4, 0x0000, 0x4A), (4, 0x15A, 6)]
    assert all(b.count <= 80 for b in blocks)  # Eastron: at most 40 parameters per request
    assert sorted(m for b in blocks for m in (r.measurand for r in b.registers)) == sorted(
        SDM630.measurands
    )
    assert SDM630.three_phase and not SDM120.three_phase
    assert [(b.request_bytes, b.response_bytes) for b in blocks] == [(8, 153), (8, 17)]


def test_float32_high_word_first_decodes_as_eastron_sends_it() -> None:
    words = list(struct.unpack(">HH", struct.pack(">f", 12.345)))
    energy = Register("energy_Wh", 0x48, scale=1000.0)
    assert energy.decode(words) == pytest.approx(12345.0, abs=0.01)
    assert energy.encode(12345.0) == words


@pytest.mark.parametrize("data_type", list(DataType))
@pytest.mark.parametrize("order", list(WordOrder))
def test_every_type_and_word_order_round_trips(data_type: DataType, order: WordOrder) -> None:
    register = Register("power_W", 100, 3, data_type, order, scale=0.1)
    value = -1234.5 if not data_type.value.startswith("uint") else 1234.5
    words = register.encode(value)
    assert len(words) == register.count == data_type.words
    assert all(0 <= w <= 0xFFFF for w in words)
    assert register.decode(words) == pytest.approx(value, rel=1e-6)


def test_word_order_little_means_low_word_first() -> None:
    big = Register("energy_Wh", 0, 3, DataType.UINT32, WordOrder.BIG)
    little = Register("energy_Wh", 0, 3, DataType.UINT32, WordOrder.LITTLE)
    assert big.decode([0x0001, 0x0002]) == 0x00010002
    assert little.decode([0x0001, 0x0002]) == 0x00020001


def test_decode_refuses_the_wrong_number_of_words() -> None:
    with pytest.raises(ValueError, match="expected 2 registers, got 1"):
        Register("power_W", 0).decode([1])


def test_nan_decodes_as_nan_so_the_meter_can_reject_it() -> None:
    assert math.isnan(Register("power_W", 0).decode([0x7FC0, 0x0000]))


def test_generic_maps_only_merge_adjacent_registers_and_split_by_function() -> None:
    regs = (
        Register("energy_Wh", 10, 3, DataType.UINT32),
        Register("power_W", 12, 3, DataType.INT16),
        Register("voltage_V", 20, 3, DataType.UINT16),
        Register("current_A", 0, 4, DataType.FLOAT32),
    )
    plan = RegisterMap("generic", regs).blocks
    assert [(b.function, b.address, b.count) for b in plan] == [(3, 10, 3), (3, 20, 1), (4, 0, 2)]


def test_reads_never_exceed_the_maps_limit() -> None:
    regs = tuple(
        Register(m, a, 4, DataType.FLOAT64)
        for m, a in [("energy_Wh", 0), ("power_W", 4), ("current_A", 8), ("voltage_V", 12)]
    )
    plan = RegisterMap("tight", regs, max_read=8).blocks
    assert [(b.address, b.count) for b in plan] == [(0, 8), (8, 8)]
    assert max(b.count for b in RegisterMap("wide", regs).blocks) <= MODBUS_MAX_READ


def test_decode_of_a_whole_poll() -> None:
    values = {m: float(i) for i, m in enumerate(SDM630.measurands, 1)}
    words = []
    for block in SDM630.blocks:
        chunk = [0] * block.count
        for r in block.registers:
            chunk[r.address - block.address : r.end - block.address] = r.encode(values[r.measurand])
        words.append(chunk)
    assert SDM630.decode(words) == pytest.approx(values)


def test_a_map_needs_energy_and_known_unique_measurands() -> None:
    with pytest.raises(ValueError, match="energy_Wh is required"):
        RegisterMap("x", (Register("power_W", 0),))
    with pytest.raises(ValueError, match="appears twice"):
        RegisterMap("x", (Register("energy_Wh", 0), Register("energy_Wh", 2)))
    with pytest.raises(ValueError, match="unknown measurand"):
        RegisterMap("x", (Register("energy_Wh", 0), Register("power_kW", 2)))


def test_names_carry_units_and_phases() -> None:
    assert units_of("power_W_L1") == "W" and units_of("frequency_Hz") == "Hz"
    assert split_phase("voltage_V_L3") == ("voltage_V", "L3")
    assert split_phase("energy_Wh") == ("energy_Wh", None)
