"""The panel's config keys, the LED language table, and the docs that repeat them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hilsim.config import embedded_defaults, load_settings, parse_settings
from hilsim.errors import ConfigError
from hilsim.evse import ErrorCode, Status
from hilsim.ocpp.session import LinkState
from hilsim.panel import load_panel_settings, mock_factory
from hilsim.panel.config import PanelSettings
from hilsim.panel.lights import (
    LINK_LANGUAGE,
    RGB_LANGUAGE,
    SEPARATE_LANGUAGE,
    Pattern,
    connector_indication,
    separate_leds_for,
)
from hilsim.panel.pins import InputPin, OutputPin, TagButton

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "/etc/hilsim/hilsim.toml"

# The shape the issue promises, verbatim.
ISSUE_EXAMPLE = """
[charge_point]
id = "CP"
csms_url = "ws://127.0.0.1:9000"
[gpio]
backend = "auto"            # auto | mock | lgpio | rpigpio | native
debounce_ms = 20
connected_led = 19          # optional
emergency_stop = 21         # optional, all connectors
[[connector]]
id = 1
voltage_V = 230.0
max_power_W = 11000
[connector.gpio]
plug = 17                   # momentary button, each press toggles plugged/unplugged
fault = 22                  # each press toggles fault/clear
tags = [{ pin = 27, id_tag = "04A2B3C4" }]
rgb_led = { red = 5, green = 6, blue = 13 }   # or: led_green / led_red / led_amber
relay = 26
"""


def panel_of(text: str) -> PanelSettings:
    return load_panel_settings(parse_settings(text, SOURCE))


def with_connector_gpio(gpio: str, *, top: str = "") -> str:
    return f"""
[charge_point]
id = "CP"
csms_url = "ws://127.0.0.1:9000"
[gpio]
backend = "mock"
{top}
[[connector]]
id = 1
[connector.gpio]
{gpio}
[[connector]]
id = 2
"""


def test_the_issue_example_parses_into_every_pin() -> None:
    panel = panel_of(ISSUE_EXAMPLE)
    assert panel.backend == "auto"
    assert panel.debounce_s == pytest.approx(0.020)
    assert panel.connected_led == OutputPin(19, "gpio.connected_led")
    assert panel.emergency_stop == InputPin(21, "gpio.emergency_stop")
    (c1,) = panel.connectors
    assert c1.connector_id == 1
    assert c1.plug == InputPin(17, "connector[1].gpio.plug", pull="up", active_high=False)
    assert c1.fault == InputPin(22, "connector[1].gpio.fault")
    assert c1.fault_code == ErrorCode.OTHER_ERROR
    assert c1.tags == (
        TagButton(InputPin(27, "connector[1].gpio.tags[1]", mode="toggle"), "04A2B3C4"),
    )
    assert c1.rgb_led is not None and c1.rgb_led.common == "cathode"
    assert [(c, o.pin, o.active_high) for c, o in c1.rgb_led.channels] == [
        ("red", 5, True),
        ("green", 6, True),
        ("blue", 13, True),
    ]
    assert c1.relay == OutputPin(26, "connector[1].gpio.relay")
    assert sorted(u.pin for u in panel.uses()) == [5, 6, 13, 17, 19, 21, 22, 26, 27]


def test_a_config_without_pins_stays_valid_and_needs_no_factory() -> None:
    panel = panel_of(with_connector_gpio("").replace("[connector.gpio]\n", ""))
    assert panel.empty
    assert panel.connectors == ()
    assert panel.debounce_s == pytest.approx(0.020)


def test_every_optional_key() -> None:
    panel = panel_of(
        with_connector_gpio(
            """
plug = { pin = 17, mode = "level", pull = "down" }
fault = { pin = 22, error_code = "GroundFailure", pull = "none", active_high = false }
tags = [{ pin = 27, id_tag = "04A2B3C4" }, { pin = 4, id_tag = "BADC0FFE", pull = "down" }]
led_green = 12
led_amber = { pin = 16 }
led_red = { pin = 20, active_high = false }
relay = { pin = 26, active_high = false }
""",
            top='debounce_ms = 0\nemergency_stop = { pin = 21, mode = "level" }',
        )
    )
    assert panel.debounce_s == 0
    assert panel.emergency_stop is not None and panel.emergency_stop.mode == "level"
    c1 = panel.connectors[0]
    assert c1.plug == InputPin(17, "connector[1].gpio.plug", "down", True, "level")
    assert c1.plug.pull_up is False
    assert c1.fault is not None and c1.fault.pull_up is None and not c1.fault.active_high
    assert c1.fault_code == ErrorCode.GROUND_FAILURE
    assert [(t.button.pin, t.id_tag, t.button.active_high) for t in c1.tags] == [
        (27, "04A2B3C4", False),
        (4, "BADC0FFE", True),
    ]
    assert [(c, o.pin, o.active_high) for c, o in c1.leds] == [
        ("green", 12, True),
        ("red", 20, False),
        ("amber", 16, True),
    ]
    assert c1.relay == OutputPin(26, "connector[1].gpio.relay", active_high=False)


def test_common_anode_rgb_drives_low() -> None:
    panel = panel_of(
        with_connector_gpio('rgb_led = { red = 5, green = 6, blue = 13, common = "anode" }')
    )
    rgb = panel.connectors[0].rgb_led
    assert rgb is not None and not rgb.active_high
    assert all(not out.active_high for _, out in rgb.channels)


@pytest.mark.parametrize(
    ("gpio", "top", "key", "expected"),
    [
        (
            "plug = 17\nfault = 17",
            "",
            "connector[1].gpio.fault",
            "GPIO17 is already used by connector[1].gpio.plug",
        ),
        (
            "plug = 17",
            "connected_led = 17",
            "connector[1].gpio.plug",
            "GPIO17 is already used by gpio.connected_led",
        ),
        (
            "rgb_led = { red = 5, green = 6, blue = 5 }",
            "",
            "connector[1].gpio.rgb_led.blue",
            "GPIO5 is already used by connector[1].gpio.rgb_led.red",
        ),
        (
            "tags = [{ pin = 27, id_tag = 'A' }, { pin = 27, id_tag = 'B' }]",
            "",
            "connector[1].gpio.tags[2].pin",
            "GPIO27 is already used by connector[1].gpio.tags[1]",
        ),
        ("plug = -1", "", "connector[1].gpio.plug", "expected a BCM GPIO number"),
        ("plug = 54", "", "connector[1].gpio.plug", "from 0 to 53), got 54"),
        ("plug = '17'", "", "connector[1].gpio.plug", "got '17'"),
        ("plug = true", "", "connector[1].gpio.plug", "got true (a boolean)"),
        ("relay = { pin = 2.5 }", "", "connector[1].gpio.relay.pin", "got 2.5"),
        ("relay = {}", "", "connector[1].gpio.relay.pin", "missing key"),
        (
            "plug = { pin = 17, mode = 'latch' }",
            "",
            "connector[1].gpio.plug.mode",
            'expected "toggle" or "level"',
        ),
        (
            "plug = { pin = 17, pull = 'sideways' }",
            "",
            "connector[1].gpio.plug.pull",
            'expected "up" or "down" or "none"',
        ),
        (
            "plug = { pin = 17, pull = 'none' }",
            "",
            "connector[1].gpio.plug.active_high",
            'with pull = "none" the wiring decides',
        ),
        (
            "plug = { pin = 17, pull = 'up', active_high = true }",
            "",
            "connector[1].gpio.plug.active_high",
            'expected false with pull = "up"',
        ),
        (
            "plug = { pin = 17, active_high = 1 }",
            "",
            "connector[1].gpio.plug.active_high",
            "expected true or false",
        ),
        (
            "plug = { pin = 17, colour = 'red' }",
            "",
            "connector[1].gpio.plug.colour",
            "unknown key; known keys are: pin, pull, active_high, mode",
        ),
        ("buzzer = 4", "", "connector[1].gpio.buzzer", "unknown key"),
        (
            "fault = { pin = 22, error_code = 'NoError' }",
            "",
            "connector[1].gpio.fault.error_code",
            "other than NoError",
        ),
        (
            "fault = { pin = 22, error_code = 'Smoke' }",
            "",
            "connector[1].gpio.fault.error_code",
            "got 'Smoke'",
        ),
        ("tags = 27", "", "connector[1].gpio.tags", "expected an array"),
        ("tags = [27]", "", "connector[1].gpio.tags[1]", "expected a table"),
        ("tags = [{ pin = 27 }]", "", "connector[1].gpio.tags[1].id_tag", "missing key"),
        (
            "tags = [{ pin = 27, id_tag = 'X' }, { pin = 4, id_tag = '123456789012345678901' }]",
            "",
            "connector[1].gpio.tags[2].id_tag",
            "at most 20 characters",
        ),
        (
            "tags = [{ pin = 27, id_tag = 'X', mode = 'level' }]",
            "",
            "connector[1].gpio.tags[1].mode",
            "unknown key",
        ),
        ("rgb_led = { red = 5, green = 6 }", "", "connector[1].gpio.rgb_led.blue", "missing key"),
        ("rgb_led = 5", "", "connector[1].gpio.rgb_led", "expected a table"),
        (
            "rgb_led = { red = 5, green = 6, blue = 13, common = 'both' }",
            "",
            "connector[1].gpio.rgb_led.common",
            'expected "cathode" or "anode"',
        ),
        (
            "rgb_led = { red = 5, green = 6, blue = 13 }\nled_red = 20",
            "",
            "connector[1].gpio.led_red",
            "either rgb_led or separate",
        ),
        ("", "debounce_ms = -1", "gpio.debounce_ms", "from 0 to 1000, got -1"),
        ("", "debounce_ms = 'fast'", "gpio.debounce_ms", "got 'fast'"),
        ("", "debounce_ms = nan", "gpio.debounce_ms", "got nan"),
        ("", "buttons = 3", "gpio.buttons", "unknown key; known keys are: backend, debounce_ms"),
        (
            "",
            "emergency_stop = { pin = 21, mode = 'twist' }",
            "gpio.emergency_stop.mode",
            'expected "toggle" or "level"',
        ),
    ],
)
def test_bad_pin_maps_name_file_key_and_expectation(
    gpio: str, top: str, key: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        panel_of(with_connector_gpio(gpio, top=top))
    error = caught.value
    assert error.file == SOURCE
    assert error.key == key
    assert expected in error.expected
    assert error.exit_status == 2
    assert str(error).startswith(f"{SOURCE}: {key}: ")


def test_a_connector_gpio_that_is_not_a_table() -> None:
    text = with_connector_gpio("").replace("[connector.gpio]\n", "gpio = 5\n")
    with pytest.raises(ConfigError) as caught:
        panel_of(text)
    assert caught.value.key == "connector[1].gpio"
    assert "expected a [connector.gpio] table, got 5" in str(caught.value)


def test_keys_are_named_by_position_like_the_core_parser() -> None:
    text = with_connector_gpio("plug = 17").replace(
        "[[connector]]\nid = 2\n", "[[connector]]\nid = 2\n[connector.gpio]\nplug = 17\n"
    )
    with pytest.raises(ConfigError) as caught:
        panel_of(text)
    assert caught.value.key == "connector[2].gpio.plug"
    assert "already used by connector[1].gpio.plug" in caught.value.expected


def test_connectors_listed_out_of_order_keep_their_ids() -> None:
    text = """
[charge_point]
id = "CP"
csms_url = "ws://127.0.0.1:9000"
[[connector]]
id = 2
[connector.gpio]
plug = 23
[[connector]]
id = 1
[connector.gpio]
plug = 17
"""
    panel = panel_of(text)
    assert [(c.connector_id, c.plug.pin if c.plug else None) for c in panel.connectors] == [
        (1, 17),
        (2, 23),
    ]
    assert panel.connector(2) is not None and panel.connector(2).plug.key == (  # type: ignore
        "connector[1].gpio.plug"
    )


# -- the LED language -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "rgb", "separate"),
    [
        (Status.AVAILABLE, ("green", Pattern.STEADY), ("green", Pattern.STEADY)),
        (Status.PREPARING, ("amber", Pattern.BLINK), ("amber", Pattern.BLINK)),
        (Status.CHARGING, ("blue", Pattern.PULSE), ("green", Pattern.PULSE)),
        (Status.SUSPENDED_EV, ("blue", Pattern.SLOW_BLINK), ("green", Pattern.SLOW_BLINK)),
        (Status.SUSPENDED_EVSE, ("amber", Pattern.SLOW_BLINK), ("amber", Pattern.SLOW_BLINK)),
        (Status.FINISHING, ("amber", Pattern.STEADY), ("amber", Pattern.STEADY)),
        (Status.RESERVED, ("blue", Pattern.STEADY), ("green+amber", Pattern.STEADY)),
        (Status.UNAVAILABLE, ("red", Pattern.STEADY), ("red", Pattern.STEADY)),
        (Status.FAULTED, ("red", Pattern.FAST_BLINK), ("red", Pattern.FAST_BLINK)),
    ],
)
def test_led_language(
    status: Status, rgb: tuple[str, Pattern], separate: tuple[str, Pattern]
) -> None:
    shown = connector_indication(status, rgb=True, online=True)
    assert (shown.colour, shown.pattern) == rgb
    shown = connector_indication(status, rgb=False, online=True)
    assert (shown.colour, shown.pattern) == separate
    # Offline a steady light winks; a rhythm already asking for attention stays as it is.
    for is_rgb, (colour, pattern) in ((True, rgb), (False, separate)):
        offline = connector_indication(status, rgb=is_rgb, online=False)
        assert offline.colour == colour
        assert offline.pattern == (Pattern.WINK if pattern == Pattern.STEADY else pattern)


def test_every_status_has_a_distinct_light() -> None:
    for language in (RGB_LANGUAGE, SEPARATE_LANGUAGE):
        assert set(language) == set(Status)
        assert len(set(language.values())) == len(Status)


def test_connected_led_language() -> None:
    assert set(LINK_LANGUAGE) == set(LinkState)
    assert LINK_LANGUAGE[LinkState.CONNECTED] == Pattern.STEADY
    assert LINK_LANGUAGE[LinkState.PENDING] == Pattern.BLINK
    assert LINK_LANGUAGE[LinkState.DISCONNECTED] == Pattern.FLASH


@pytest.mark.parametrize(
    ("wanted", "fitted", "lit"),
    [
        (("amber",), "green amber red", "amber"),
        (("amber",), "green red", "red green"),  # a red/green bi-colour LED makes amber
        (("amber",), "green", "green"),
        (("green", "amber"), "green red", "green red"),
        (("red",), "green amber", "amber"),
        (("green",), "amber red", "amber"),
        (("red",), "green", ""),
    ],
)
def test_missing_separate_leds_have_stand_ins(
    wanted: tuple[str, ...], fitted: str, lit: str
) -> None:
    assert separate_leds_for(wanted, frozenset(fitted.split())) == frozenset(lit.split())


# -- the docs and shipped configs repeat the same facts --------------------------------------


def _table_after(text: str, heading: str) -> list[list[str]]:
    section = text[text.index(heading) :]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not set(line) <= set("|-: "):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_readme_led_table_matches_the_language() -> None:
    rows = _table_after((ROOT / "README.md").read_text(), "### LED language")
    header, *body = rows
    assert header[:3] == ["Status", "RGB LED", "Separate LEDs"]
    documented = {row[0]: (row[1], row[2]) for row in body}
    for status in Status:
        rgb = RGB_LANGUAGE[status]
        sep = SEPARATE_LANGUAGE[status]
        assert documented[str(status)] == (
            f"{rgb.colour} {rgb.pattern}",
            f"{sep.colour} {sep.pattern}",
        ), status


def test_hardware_pin_table_matches_the_example_config_and_the_board() -> None:
    settings = load_settings(ROOT / "hardware" / "hilsim-panel.toml")
    panel = load_panel_settings(settings)
    rows = _table_after((ROOT / "hardware" / "README.md").read_text(), "## BCM pin table")
    header, *body = rows
    assert header[:4] == ["BCM", "Header pin", "Config key", "Part"]
    documented = {int(row[0].removeprefix("GPIO")): (int(row[1]), row[2]) for row in body}
    configured = {use.pin: use.key for use in panel.uses()}
    assert {pin: key for pin, (_, key) in documented.items()} == configured
    board = mock_factory().board_info  # a 40-pin header, as on every Pi since the B+
    for pin, (header_pin, _) in documented.items():
        ((_, info),) = list(board.find_pin(f"GPIO{pin}"))
        assert info.number == header_pin, f"GPIO{pin} is header pin {info.number}"


def test_the_demo_config_is_the_hardware_panel_on_mock_pins() -> None:
    demo = load_panel_settings(embedded_defaults())
    example = load_panel_settings(load_settings(ROOT / "hardware" / "hilsim-panel.toml"))
    assert demo.backend == "mock"
    assert example.backend == "auto"
    assert {(u.pin, u.role, u.connector_id) for u in demo.uses()} <= {
        (u.pin, u.role, u.connector_id) for u in example.uses()
    }
    assert {c.connector_id for c in demo.connectors} == {1, 2}
    for connector in demo.connectors:
        assert connector.plug is not None and connector.tags and connector.relay is not None


def test_readme_config_sample_parses() -> None:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Physical panel") :]
    sample = re.search(r"```toml\n(.*?)```", section, re.S)
    assert sample is not None
    panel = panel_of(
        '[charge_point]\nid = "CP"\ncsms_url = "ws://127.0.0.1:9000"\n' + sample.group(1)
    )
    assert not panel.empty
