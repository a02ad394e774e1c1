"""Configuration loading: the public TOML shape, and one clear error per way of getting it wrong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import hilsim
from hilsim.config import (
    DEFAULT_CONFIG_PATH,
    ChargePointSettings,
    ConnectorSettings,
    ControlSettings,
    CsmsSettings,
    GpioSettings,
    StorageSettings,
    embedded_defaults,
    load_settings,
    parse_settings,
)
from hilsim.errors import ConfigError

EXAMPLE = """\
[charge_point]
id = "PI-BENCH-01"
csms_url = "ws://127.0.0.1:9000"      # the charge point id is appended as the last path segment
vendor = "hilsim"
model = "bench"
firmware_version = "0.1.0"
[[connector]]                         # one table per connector, ids 1..n
id = 1
voltage_V = 230.0
max_power_W = 11000
[storage]
database = "/var/lib/hilsim/hilsim.db"
[control]
socket = "/run/hilsim/control.sock"
[gpio]
backend = "mock"
[csms]                                # settings of the built-in CSMS (`hilsim csms`), optional
host = "127.0.0.1"
port = 9000
id_tags = ["04A2B3C4", "DEADBEEF"]    # tags the built-in CSMS accepts
"""

MINIMAL = """\
[charge_point]
id = "CP1"
csms_url = "ws://localhost:9000"
[[connector]]
id = 1
"""


def write(tmp_path: Path, text: str, name: str = "hilsim.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def expect_error(path: Path, key: str | None, *fragments: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    error = info.value
    message = str(error)
    assert str(path) in message
    assert error.file == str(path)
    assert error.key == key
    if key is not None:
        assert key in message
    for fragment in fragments:
        assert fragment in message
    return error


def test_example_parses_to_expected_settings(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE)
    settings = load_settings(path)

    assert settings.source == str(path)
    assert settings.charge_point == ChargePointSettings(
        id="PI-BENCH-01",
        csms_url="ws://127.0.0.1:9000",
        vendor="hilsim",
        model="bench",
        firmware_version="0.1.0",
    )
    assert settings.connectors == (ConnectorSettings(id=1, voltage_V=230.0, max_power_W=11000.0),)
    assert isinstance(settings.connectors[0].max_power_W, float)
    assert settings.storage == StorageSettings(database=Path("/var/lib/hilsim/hilsim.db"))
    assert settings.control == ControlSettings(socket=Path("/run/hilsim/control.sock"))
    assert settings.gpio == GpioSettings(backend="mock")
    assert settings.csms == CsmsSettings(
        host="127.0.0.1", port=9000, id_tags=("04A2B3C4", "DEADBEEF")
    )
    assert settings.connector(1) is settings.connectors[0]
    assert settings.raw["charge_point"]["id"] == "PI-BENCH-01"
    assert Path("/etc/hilsim/hilsim.toml") == DEFAULT_CONFIG_PATH


def test_optional_tables_take_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL))

    assert settings.charge_point.vendor == "hilsim"
    assert settings.charge_point.model == "bench"
    assert settings.charge_point.firmware_version == hilsim.__version__
    assert settings.charge_point.serial_number is None
    assert settings.connectors == (ConnectorSettings(id=1),)
    assert settings.gpio.backend == "mock"
    assert settings.csms == CsmsSettings()
    assert settings.storage.database == Path("/var/lib/hilsim/hilsim.db")
    assert settings.control.socket == Path("/run/hilsim/control.sock")


def test_optional_charge_point_strings(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "[[connector]]",
        'serial_number = "SN1"\ncharge_box_serial_number = "CB1"\n'
        'meter_serial_number = "M1"\nmeter_type = "sim"\n[[connector]]',
    )
    cp = load_settings(write(tmp_path, text)).charge_point
    assert (cp.serial_number, cp.charge_box_serial_number) == ("SN1", "CB1")
    assert (cp.meter_serial_number, cp.meter_type) == ("M1", "sim")


def test_connectors_sorted_and_looked_up_by_id(tmp_path: Path) -> None:
    text = MINIMAL.replace("id = 1\n", "id = 2\nvoltage_V = 120\n[[connector]]\nid = 1\n")
    settings = load_settings(write(tmp_path, text))
    assert [c.id for c in settings.connectors] == [1, 2]
    assert settings.connector(2).voltage_V == 120.0
    with pytest.raises(KeyError):
        settings.connector(3)


def test_relative_paths_resolve_against_config_directory(tmp_path: Path) -> None:
    text = EXAMPLE.replace("/var/lib/hilsim/hilsim.db", "data/hilsim.db").replace(
        "/run/hilsim/control.sock", "../control.sock"
    )
    settings = load_settings(write(tmp_path, text))
    assert settings.storage.database == tmp_path / "data" / "hilsim.db"
    assert settings.control.socket == tmp_path.parent / "control.sock"


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, EXAMPLE))
    with pytest.raises(AttributeError):
        settings.charge_point.id = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.raw["charge_point"]["id"] = "other"  # type: ignore[index]


@pytest.mark.parametrize(
    ("url", "cp_id", "endpoint"),
    [
        ("ws://127.0.0.1:9000", "PI-BENCH-01", "ws://127.0.0.1:9000/PI-BENCH-01"),
        ("ws://127.0.0.1:9000/", "CP1", "ws://127.0.0.1:9000/CP1"),
        ("wss://csms.example/ocpp16", "CP1", "wss://csms.example/ocpp16/CP1"),
        ("wss://csms.example/ocpp16/", "CP1", "wss://csms.example/ocpp16/CP1"),
        ("ws://h:1/ocpp?token=x", "CP1", "ws://h:1/ocpp/CP1?token=x"),
        ("ws://h:1", "bench #1", "ws://h:1/bench%20%231"),
        ("ws://h:1", "Ä?", "ws://h:1/%C3%84%3F"),
    ],
)
def test_endpoint_appends_percent_encoded_id(url: str, cp_id: str, endpoint: str) -> None:
    assert ChargePointSettings(id=cp_id, csms_url=url).endpoint == endpoint


def test_embedded_defaults_resolve_against_base_dir(tmp_path: Path) -> None:
    settings = embedded_defaults(tmp_path)

    assert settings.source == "<embedded defaults>"
    assert settings.charge_point.id == "HILSIM-DEMO"
    assert settings.charge_point.csms_url == "ws://127.0.0.1:9000"
    assert settings.connectors == (
        ConnectorSettings(id=1, voltage_V=230.0, max_power_W=11000.0),
        ConnectorSettings(id=2, voltage_V=230.0, max_power_W=7400.0),
    )
    assert settings.storage.database == tmp_path / "hilsim-demo.db"
    assert settings.control.socket == tmp_path / "hilsim-demo.sock"


def test_embedded_defaults_default_to_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = embedded_defaults()
    assert settings.storage.database == tmp_path / "hilsim-demo.db"
    assert settings.control.socket == tmp_path / "hilsim-demo.sock"


def test_parse_settings_labels_errors_with_source() -> None:
    with pytest.raises(ConfigError, match=r"^inline: charge_point: missing table"):
        parse_settings("", "inline")


# -- errors --------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    expect_error(tmp_path / "absent.toml", None, "file not found", "expected a TOML")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    expect_error(tmp_path, None, "cannot read", "is a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files regardless of permissions")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE)
    path.chmod(0)
    try:
        expect_error(path, None, "cannot read", "Permission denied")
    finally:
        path.chmod(0o600)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "hilsim.toml"
    path.write_bytes(b'[charge_point]\nid = "\xff"\n')
    expect_error(path, None, "expected UTF-8")


def test_invalid_toml_reports_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '[charge_point]\nid = "CP1"\ncsms_url = \n')
    expect_error(path, None, "expected valid TOML", "line 3", "column")


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("[[connector]]\nid = 1\n", "charge_point", "missing table"),
        (MINIMAL.replace('id = "CP1"\n', ""), "charge_point.id", "missing key"),
        (
            MINIMAL.replace('csms_url = "ws://localhost:9000"\n', ""),
            "charge_point.csms_url",
            "missing key",
        ),
        (MINIMAL.split("[[connector]]")[0], "connector", "at least one [[connector]]"),
        (MINIMAL.replace("[[connector]]", "[connector]"), "connector", "array of [[connector]]"),
        (MINIMAL.replace("id = 1", ""), "connector[1].id", "missing key"),
    ],
)
def test_missing_required(tmp_path: Path, text: str, key: str, expected: str) -> None:
    expect_error(write(tmp_path, text), key, expected)


CONNECTOR_2 = "\n[[connector]]\nid = 2\n"


@pytest.mark.parametrize(
    ("addition", "key", "expected"),
    [
        ('voltage_V = "abc"', "connector[2].voltage_V", "expected a number greater than 0"),
        ("voltage_V = true", "connector[2].voltage_V", "got true (a boolean)"),
        ("max_power_W = false", "connector[2].max_power_W", "got false (a boolean)"),
        ('max_power_W = "11kW"', "connector[2].max_power_W", "got '11kW'"),
        ("voltage_V = 0", "connector[2].voltage_V", "greater than 0 and at most 1000, got 0"),
        ("voltage_V = -5.0", "connector[2].voltage_V", "at most 1000, got -5.0"),
        ("voltage_V = 1000.5", "connector[2].voltage_V", "at most 1000, got 1000.5"),
        ("voltage_V = nan", "connector[2].voltage_V", "got nan"),
        ("max_power_W = 0", "connector[2].max_power_W", "greater than 0 and at most 400000"),
        ("max_power_W = 400001", "connector[2].max_power_W", "at most 400000, got 400001"),
        ("phases = 0", "connector[2].phases", "expected an integer from 1 to 3, got 0"),
        ("phases = 4", "connector[2].phases", "expected an integer from 1 to 3, got 4"),
        ('phases = "3"', "connector[2].phases", "from 1 to 3, got '3'"),
        ("phases = true", "connector[2].phases", "got true (a boolean)"),
        ("phases = 3.0", "connector[2].phases", "from 1 to 3, got 3.0"),
        ("voltage", "connector[2]", "expected valid TOML"),
        ("voltag_V = 230", "connector[2].voltag_V", "unknown key; known keys are: id, voltage_V"),
    ],
)
def test_connector_values(tmp_path: Path, addition: str, key: str, expected: str) -> None:
    path = write(tmp_path, MINIMAL + CONNECTOR_2 + addition + "\n")
    if "valid TOML" in expected:
        expect_error(path, None, expected)
    else:
        expect_error(path, key, expected)


def test_phases_default_to_one_and_three_is_accepted(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL + CONNECTOR_2 + "phases = 3\n"))
    assert [c.phases for c in settings.connectors] == [1, 3]


def test_upper_bounds_are_inclusive_and_ints_accepted(tmp_path: Path) -> None:
    text = MINIMAL + "voltage_V = 1000\nmax_power_W = 400000\n"
    connector = load_settings(write(tmp_path, text)).connector(1)
    assert connector.voltage_V == 1000.0
    assert isinstance(connector.voltage_V, float)
    assert connector.max_power_W == 400000.0


@pytest.mark.parametrize(
    ("ids", "key", "expected"),
    [
        ((1, 1), "connector[2].id", "expected a unique id, got 1"),
        ((1, 3), "connector[2].id", "expected an id from 1 to 2"),
        ((2,), "connector[1].id", "expected an id from 1 to 1"),
        ((0, 1), "connector[1].id", "expected an integer from 1, got 0"),
        (("'1'",), "connector[1].id", "expected an integer from 1, got '1'"),
        (("true",), "connector[1].id", "got true (a boolean)"),
        (("1.0",), "connector[1].id", "got 1.0"),
    ],
)
def test_connector_ids_must_be_1_to_n(
    tmp_path: Path, ids: tuple[object, ...], key: str, expected: str
) -> None:
    head = MINIMAL.split("[[connector]]")[0]
    text = head + "".join(f"[[connector]]\nid = {i}\n" for i in ids)
    expect_error(write(tmp_path, text), key, expected)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:9000", "expected a ws:// or wss:// URL"),
        ("127.0.0.1:9000", "expected a ws:// or wss:// URL"),
        ("ws://", "expected a ws:// or wss:// URL"),
        ("ws://host:notaport", "expected a ws:// or wss:// URL"),
        ("ws://host/ocpp#frag", "without a '#' fragment"),
    ],
)
def test_csms_url_must_be_websocket(tmp_path: Path, url: str, expected: str) -> None:
    text = MINIMAL.replace("ws://localhost:9000", url)
    expect_error(write(tmp_path, text), "charge_point.csms_url", expected, repr(url))


def test_csms_url_wrong_type(tmp_path: Path) -> None:
    text = MINIMAL.replace('"ws://localhost:9000"', "9000")
    expect_error(write(tmp_path, text), "charge_point.csms_url", "expected a string, got 9000")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('""', "expected a non-empty string"),
        ('"  "', "expected a non-empty string"),
        ('"bench/01"', "expected an id without '/'"),
        ("42", "expected a string, got 42"),
    ],
)
def test_charge_point_id(tmp_path: Path, value: str, expected: str) -> None:
    text = MINIMAL.replace('"CP1"', value)
    expect_error(write(tmp_path, text), "charge_point.id", expected)


def test_charge_point_field_longer_than_ocpp_allows(tmp_path: Path) -> None:
    text = MINIMAL.replace("[[connector]]", f'vendor = "{"v" * 21}"\n[[connector]]')
    expect_error(write(tmp_path, text), "charge_point.vendor", "at most 20 characters")


def test_ocpp_version_is_1_6_unless_set_to_2_0_1(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, MINIMAL)).charge_point.ocpp_version == "1.6"
    text = MINIMAL.replace("[[connector]]", 'ocpp_version = "2.0.1"\n[[connector]]')
    assert load_settings(write(tmp_path, text)).charge_point.ocpp_version == "2.0.1"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"2.0"', "expected one of '1.6', '2.0.1', got '2.0'"),
        ("1.6", "expected one of '1.6', '2.0.1', got 1.6"),
    ],
)
def test_ocpp_version_must_be_one_spoken(tmp_path: Path, value: str, expected: str) -> None:
    text = MINIMAL.replace("[[connector]]", f"ocpp_version = {value}\n[[connector]]")
    expect_error(write(tmp_path, text), "charge_point.ocpp_version", expected)


@pytest.mark.parametrize(
    ("table", "line", "key"),
    [
        ("charge_point", 'csms_uri = "ws://x"', "charge_point.csms_uri"),
        ("storage", 'databse = "x.db"', "storage.databse"),
        ("control", 'sock = "x.sock"', "control.sock"),
        ("csms", "prot = 9000", "csms.prot"),
    ],
)
def test_unknown_keys_in_known_tables(tmp_path: Path, table: str, line: str, key: str) -> None:
    if table == "charge_point":
        text = MINIMAL.replace("[[connector]]", f"{line}\n[[connector]]")
    else:
        text = MINIMAL + f"[{table}]\n{line}\n"
    expect_error(write(tmp_path, text), key, "unknown key; known keys are: ")


def test_unknown_key_lists_known_keys(tmp_path: Path) -> None:
    text = MINIMAL + "[csms]\nprot = 9000\n"
    expect_error(write(tmp_path, text), "csms.prot", "known keys are: host, port, id_tags")


def test_unknown_top_level_table(tmp_path: Path) -> None:
    text = MINIMAL + "[chargepoint]\nid = 'x'\n"
    expect_error(
        write(tmp_path, text), "chargepoint", "unknown table; known tables are: charge_point"
    )


def test_unknown_top_level_key(tmp_path: Path) -> None:
    text = "debug = true\n" + MINIMAL
    expect_error(write(tmp_path, text), "debug", "unknown table")


def test_tables_of_later_issues_are_allowed(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + "[connector.gpio]\nrelay = 17\n[connector.meter]\nkind = 'sim'\n"
        + "[gpio]\nbackend = 'auto'\nled_pin = 5\nbutton = { pin = 6 }\n"
        + "[security]\nprofile = 1\n[web]\nport = 8080\n[meter]\nanything = 'goes'\n"
    )
    settings = load_settings(write(tmp_path, text))
    assert settings.gpio.backend == "auto"
    assert settings.raw["connector"][0]["gpio"]["relay"] == 17
    assert settings.raw["gpio"]["led_pin"] == 5
    assert settings.raw["web"]["port"] == 8080


def test_table_of_wrong_type(tmp_path: Path) -> None:
    text = 'storage = "x.db"\n' + MINIMAL
    expect_error(write(tmp_path, text), "storage", "expected a [storage] table, got 'x.db'")


def test_gpio_backend_must_be_known(tmp_path: Path) -> None:
    text = MINIMAL + "[gpio]\nbackend = 'pigpio'\n"
    expect_error(
        write(tmp_path, text),
        "gpio.backend",
        "expected one of auto, mock, lgpio, rpigpio, native, got 'pigpio'",
    )


@pytest.mark.parametrize(
    ("lines", "key", "expected"),
    [
        ("port = '9000'", "csms.port", "expected an integer from 0 to 65535, got '9000'"),
        ("port = 65536", "csms.port", "expected an integer from 0 to 65535, got 65536"),
        ("port = true", "csms.port", "got true (a boolean)"),
        ("host = 1", "csms.host", "expected a string, got 1"),
        ("id_tags = 'DEADBEEF'", "csms.id_tags", "expected an array of strings"),
        ("id_tags = ['A', 7]", "csms.id_tags[1]", "got 7"),
        ("id_tags = ['123456789012345678901']", "csms.id_tags[0]", "at most 20 characters"),
    ],
)
def test_csms_table(tmp_path: Path, lines: str, key: str, expected: str) -> None:
    expect_error(write(tmp_path, MINIMAL + "[csms]\n" + lines + "\n"), key, expected)


@pytest.mark.parametrize(
    ("table", "line", "key"),
    [
        ("storage", "database = 1", "storage.database"),
        ("storage", 'database = ""', "storage.database"),
        ("control", "socket = []", "control.socket"),
    ],
)
def test_path_values(tmp_path: Path, table: str, line: str, key: str) -> None:
    expect_error(write(tmp_path, MINIMAL + f"[{table}]\n{line}\n"), key, "expected a")
