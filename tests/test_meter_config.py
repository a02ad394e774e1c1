"""[connector.meter] tables: the issue's shape works; each mistake names file, key, expectation."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hilsim.config import parse_settings
from hilsim.errors import ConfigError
from hilsim.meter.config import build_meters, meter_settings
from hilsim.meter.registers import SDM120, SDM630, DataType, WordOrder

HEAD = """
[charge_point]
id = "CP"
csms_url = "ws://127.0.0.1:9"
"""
ISSUE_EXAMPLE = """
[[connector]]
id = 1
voltage_V = 230.0
max_power_W = 11000
[connector.meter]
kind = "sdm630"             # synthetic | sdm120 | sdm630 | generic
port = "/dev/hilsim-meter"
baudrate = 9600
parity = "N"                # N | E | O
stopbits = 1
unit_id = 1
poll_interval_s = 1.0
"""


def settings(body: str, source: str = "bench.toml"):
    return parse_settings(HEAD + textwrap.dedent(body), source)


def meters(body: str):
    return meter_settings(settings(body))


def error(body: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        meters(body)
    return caught.value


def test_the_issues_example_parses() -> None:
    (m,) = meters(ISSUE_EXAMPLE).values()
    assert (m.kind, m.port, m.baudrate, m.parity, m.stopbits, m.unit_id) == (
        "sdm630",
        "/dev/hilsim-meter",
        9600,
        "N",
        1,
        1,
    )
    assert m.poll_interval_s == 1.0 and m.register_map is SDM630 and m.connector_id == 1
    assert m.description == "sdm630 at /dev/hilsim-meter (9600 8N1, unit 1)"
    assert (m.timeout_s, m.fault_after_s, m.retry_max_s) == (1.0, 10.0, 10.0)  # defaults


def test_without_a_meter_table_the_synthetic_counter_stays() -> None:
    assert meters("[[connector]]\nid = 1\n") == {}
    assert meters('[[connector]]\nid = 1\n[connector.meter]\nkind = "synthetic"\n') == {}
    assert build_meters({}) == {}


def test_every_key_is_read() -> None:
    (m,) = meters(
        """
        [[connector]]
        id = 1
        [connector.meter]
        kind = "sdm120"
        port = "/dev/ttyUSB0"
        baudrate = 19200
        parity = "E"
        stopbits = 2
        unit_id = 247
        poll_interval_s = 0.5
        timeout_s = 0.3
        fault_after_s = 30
        retry_max_s = 5
        """
    ).values()
    assert m.register_map is SDM120 and m.line == "19200 8E2" and m.unit_id == 247
    assert (m.poll_interval_s, m.timeout_s, m.fault_after_s, m.retry_max_s) == (0.5, 0.3, 30.0, 5.0)


def test_a_generic_meter_describes_its_registers() -> None:
    (m,) = meters(
        """
        [[connector]]
        id = 1
        [connector.meter]
        kind = "generic"
        port = "/dev/ttyUSB0"
        [connector.meter.registers]
        power_W = { address = 0x0200 }
        voltage_V_L1 = { address = 0x0202, type = "int16", scale = 0.1 }
        [connector.meter.registers.energy_Wh]
        function = 3
        address = 0x0100
        type = "uint32"
        word_order = "little"
        scale = 10.0
        """
    ).values()
    regs = {r.measurand: r for r in m.register_map.registers}
    energy = regs["energy_Wh"]
    assert (energy.function, energy.address, energy.type, energy.word_order, energy.scale) == (
        3,
        0x100,
        DataType.UINT32,
        WordOrder.LITTLE,
        10.0,
    )
    power = regs["power_W"]  # defaults: input register, float32, high word first, unscaled
    assert (power.function, power.type, power.word_order, power.scale) == (
        4,
        DataType.FLOAT32,
        WordOrder.BIG,
        1.0,
    )
    assert regs["voltage_V_L1"].scale == 0.1 and m.register_map.three_phase


def test_connectors_are_labelled_by_position_and_matched_by_id() -> None:
    found = meters(
        """
        [[connector]]
        id = 2
        [[connector]]
        id = 1
        [connector.meter]
        kind = "sdm120"
        port = "/dev/ttyUSB0"
        """
    )
    assert list(found) == [1]
    err = error(
        """
        [[connector]]
        id = 2
        [[connector]]
        id = 1
        [connector.meter]
        kind = "sdm120"
        port = "/dev/ttyUSB0"
        baudrate = 9601
        """
    )
    assert err.key == "connector[2].meter.baudrate"


def test_two_meters_may_share_a_bus_with_distinct_unit_ids() -> None:
    two = """
        [[connector]]
        id = 1
        [connector.meter]
        kind = "sdm630"
        port = "/dev/ttyUSB0"
        unit_id = 1
        [[connector]]
        id = 2
        [connector.meter]
        kind = "sdm120"
        port = "/dev/ttyUSB0"
        unit_id = {unit}
        {extra}
        """
    assert set(meters(two.format(unit=2, extra=""))) == {1, 2}
    err = error(two.format(unit=1, extra=""))
    assert err.key == "connector[2].meter.unit_id"
    assert "not already used on /dev/ttyUSB0 by connector[1].meter" in err.expected
    err = error(two.format(unit=2, extra="baudrate = 19200"))
    assert err.key == "connector[2].meter"
    assert "same line settings" in err.expected and "9600 8N1" in err.expected


@pytest.mark.parametrize(
    ("meter_table", "key", "expected"),
    [
        ('port = "/dev/x"', "connector[1].meter.kind", "missing key; expected one of synthetic"),
        (
            'kind = "sdm999"',
            "connector[1].meter.kind",
            "expected one of synthetic, sdm120, sdm630, generic, got 'sdm999'",
        ),
        (
            'kind = "sdm630"',
            "connector[1].meter.port",
            "expected the serial device, e.g. '/dev/ttyUSB0'; missing key",
        ),
        ('kind = "sdm630"\nport = ""', "connector[1].meter.port", "got ''"),
        ('kind = "sdm630"\nport = 5', "connector[1].meter.port", "got 5"),
        (
            'kind = "sdm630"\nport = "/dev/x"\nbaudrate = 9601',
            "connector[1].meter.baudrate",
            "expected one of 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, got 9601",
        ),
        (
            'kind = "sdm630"\nport = "/dev/x"\nbaudrate = "9600"',
            "connector[1].meter.baudrate",
            "got '9600'",
        ),
        (
            'kind = "sdm630"\nport = "/dev/x"\nparity = "n"',
            "connector[1].meter.parity",
            "expected one of N, E, O, got 'n'",
        ),
        (
            'kind = "sdm630"\nport = "/dev/x"\nstopbits = 1.5',
            "connector[1].meter.stopbits",
            "expected one of 1, 2, got 1.5",
        ),
        (
            'kind = "sdm630"\nport = "/dev/x"\nstopbits = true',
            "connector[1].meter.stopbits",
            "got true (a boolean)",
        ),
        (
            'kind = "sdm630"\nport = "/dev/x"\nunit_id = 0',
            "connector[1].meter.unit_id",
            "expected an integer from 1 to 247, got 0",
        ),
        (
            'kind = "sdm630"\nport = "/dev/x"\nunit_id = 248',
            "connector[1].meter.unit_id",
            "got 248",
        ),
        (
            'kind = "sdm630"\nport = "/dev/x"\npoll_interval_s = 0',
            "connector[1].meter.poll_interval_s",
            "expected seconds from 0.05 to 3600, got 0",
        ),
        (
            'kind = "sdm630"\nport = "/dev/x"\npoll_interval_s = nan',
            "connector[1].meter.poll_interval_s",
            "got nan",
        ),
        (
            'kind = "sdm630"\nport = "/dev/x"\ntimeout_s = -1',
            "connector[1].meter.timeout_s",
            "expected seconds from 0.01 to 60, got -1",
        ),
        (
            'kind = "sdm630"\nport = "/dev/x"\nfault_after_s = "soon"',
            "connector[1].meter.fault_after_s",
            "got 'soon'",
        ),
        (
            'kind = "sdm630"\nport = "/dev/x"\npoll_interval_s = 5\nretry_max_s = 1',
            "connector[1].meter.retry_max_s",
            "expected seconds from 5 to 3600, got 1",
        ),
        (
            'kind = "sdm630"\nport = "/dev/x"\nbaud = 9600',
            "connector[1].meter.baud",
            "unknown key; known keys are: kind, port, baudrate",
        ),
        (
            'kind = "synthetic"\nport = "/dev/x"',
            "connector[1].meter.port",
            'unknown key for kind = "synthetic"',
        ),
        (
            'kind = "sdm630"\nport = "/dev/x"\n'
            "[connector.meter.registers]\nenergy_Wh = { address = 0 }",
            "connector[1].meter.registers",
            "unknown key",
        ),
    ],
)
def test_mistakes_name_the_file_key_and_expectation(
    meter_table: str, key: str, expected: str
) -> None:
    err = error(f"[[connector]]\nid = 1\n[connector.meter]\n{meter_table}\n")
    assert err.file == "bench.toml"
    assert err.key == key
    assert expected in err.expected
    assert str(err).startswith(f"bench.toml: {key}: ")
    assert err.exit_status == 2


@pytest.mark.parametrize(
    ("registers", "key", "expected"),
    [
        ("", "connector[1].meter.registers", "missing table; a generic meter needs"),
        (
            "[connector.meter.registers]\npower_W = { address = 0 }",
            "connector[1].meter.registers.energy_Wh",
            "missing; expected the energy register",
        ),
        (
            "[connector.meter.registers]\nenergy_kWh = { address = 0 }",
            "connector[1].meter.registers.energy_kWh",
            "unknown measurand; known measurands are: energy_Wh, power_W",
        ),
        (
            "[connector.meter.registers]\nenergy_Wh = 72",
            "connector[1].meter.registers.energy_Wh",
            "expected an inline table",
        ),
        (
            "[connector.meter.registers]\nenergy_Wh = { type = 'float32' }",
            "connector[1].meter.registers.energy_Wh.address",
            "missing key; expected an integer from 0 to 65535",
        ),
        (
            "[connector.meter.registers]\nenergy_Wh = { address = 70000 }",
            "connector[1].meter.registers.energy_Wh.address",
            "expected an integer from 0 to 65535, got 70000",
        ),
        (
            "[connector.meter.registers]\nenergy_Wh = { address = 65535 }",
            "connector[1].meter.registers.energy_Wh.address",
            "expected float32 to fit below 65536",
        ),
        (
            "[connector.meter.registers]\nenergy_Wh = { address = 0, function = 6 }",
            "connector[1].meter.registers.energy_Wh.function",
            "expected 3 (holding registers) or 4 (input registers), got 6",
        ),
        (
            "[connector.meter.registers]\nenergy_Wh = { address = 0, type = 'float' }",
            "connector[1].meter.registers.energy_Wh.type",
            "expected one of float32, float64, int16",
        ),
        (
            "[connector.meter.registers]\nenergy_Wh = { address = 0, word_order = 'middle' }",
            "connector[1].meter.registers.energy_Wh.word_order",
            "expected 'big' (high word first) or 'little' (low word first), got 'middle'",
        ),
        (
            "[connector.meter.registers]\nenergy_Wh = { address = 0, scale = 0 }",
            "connector[1].meter.registers.energy_Wh.scale",
            "expected a non-zero number",
        ),
        (
            "[connector.meter.registers]\nenergy_Wh = { address = 0, signed = true }",
            "connector[1].meter.registers.energy_Wh.signed",
            "unknown key; known keys are: function, address, type, word_order, scale",
        ),
    ],
)
def test_generic_register_mistakes(registers: str, key: str, expected: str) -> None:
    head = '[[connector]]\nid = 1\n[connector.meter]\nkind = "generic"\nport = "/dev/x"\n'
    err = error(f"{head}{registers}\n")
    assert err.key == key
    assert expected in err.expected


def test_hilsim_run_exits_2_on_a_meter_mistake(tmp_path: Path) -> None:
    config = tmp_path / "hilsim.toml"
    config.write_text(
        HEAD
        + f"""
[storage]
database = "{tmp_path / "db.sqlite"}"
[control]
socket = "{tmp_path / "ctl.sock"}"
[gpio]
backend = "mock"
[[connector]]
id = 1
[connector.meter]
kind = "sdm630"
port = "/dev/ttyUSB0"
parity = "X"
"""
    )
    done = subprocess.run(
        [sys.executable, "-m", "hilsim", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().endswith(
        f"hilsim: {config}: connector[1].meter.parity: expected one of N, E, O, got 'X'"
    )
    assert not (tmp_path / "db.sqlite").exists()  # failed before any IO
