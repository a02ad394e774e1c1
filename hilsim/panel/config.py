"""The panel's part of the TOML file: `[gpio]` extras and each connector's `[connector.gpio]`.

The core parser owns only `[gpio] backend` and passes the rest through in `Settings.raw`; this
module validates it completely before a single pin is touched, so a wiring typo is one line naming
the file, the dotted key and what was expected, never a half-configured panel. Pin numbers are BCM
numbers; whether a number exists on the board in hand is only known to the pin factory, and is
checked when the panel opens.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hilsim.config import Settings, describe_value
from hilsim.errors import ConfigError
from hilsim.evse import ErrorCode

if TYPE_CHECKING:  # the pin types load with the first pin the file names (see hilsim.panel.pins)
    from hilsim.panel.pins import ConnectorPanel, InputPin, OutputPin, PinUse, RgbLed, TagButton

#: Highest BCM number on any Broadcom/RP1 GPIO bank gpiozero knows; the board decides the rest.
MAX_BCM = 53
DEFAULT_DEBOUNCE_MS = 20.0
MAX_DEBOUNCE_MS = 1000.0
ID_TAG_MAX_LENGTH = 20  # OCPP 1.6 IdToken is CiString20

INPUT_MODES = ("toggle", "level")
PULLS = ("up", "down", "none")
LED_COLOURS = ("green", "red", "amber")
RGB_COMMONS = ("cathode", "anode")

_GPIO_KEYS = ("backend", "debounce_ms", "connected_led", "emergency_stop")
_CONNECTOR_GPIO_KEYS = (
    "plug",
    "fault",
    "tags",
    "rgb_led",
    *(f"led_{colour}" for colour in LED_COLOURS),
    "relay",
)
_INPUT_KEYS = ("pin", "pull", "active_high")
_OUTPUT_KEYS = ("pin", "active_high")


#: The control commands the panel answers (`hilsim ctl pins/press/release`).
PANEL_COMMANDS = ("pins", "press", "release")


@dataclass(frozen=True, slots=True)
class PanelSettings:
    """The whole panel as configured: backend, debounce and every pin, checked."""

    source: str
    backend: str = "mock"
    debounce_s: float = DEFAULT_DEBOUNCE_MS / 1000
    connected_led: OutputPin | None = None
    emergency_stop: InputPin | None = None
    connectors: tuple[ConnectorPanel, ...] = ()

    @property
    def empty(self) -> bool:
        """No pin configured at all: no pin factory is needed (a laptop needs no GPIO library)."""
        return next(iter(self.uses()), None) is None

    def connector(self, connector_id: int) -> ConnectorPanel | None:
        for panel in self.connectors:
            if panel.connector_id == connector_id:
                return panel
        return None

    def uses(self) -> Iterator[PinUse]:
        """Every configured pin, in file order."""
        if self.emergency_stop is None and self.connected_led is None and not self.connectors:
            return  # not one pin (and hilsim.panel.pins perhaps never loaded)
        from hilsim.panel.pins import PinUse

        if self.emergency_stop is not None:
            yield PinUse.of(self.emergency_stop, "emergency_stop", None, "input")
        if self.connected_led is not None:
            yield PinUse.of(self.connected_led, "connected_led", None, "output")
        for c in self.connectors:
            cid = c.connector_id
            if c.plug is not None:
                yield PinUse.of(c.plug, "plug", cid, "input")
            if c.fault is not None:
                yield PinUse.of(c.fault, "fault", cid, "input")
            for tag in c.tags:
                yield PinUse.of(tag.button, "tag", cid, "input")
            if c.rgb_led is not None:
                for colour, out in c.rgb_led.channels:
                    yield PinUse.of(out, f"rgb_led.{colour}", cid, "output")
            for colour, out in c.leds:
                yield PinUse.of(out, f"led_{colour}", cid, "output")
            if c.relay is not None:
                yield PinUse.of(c.relay, "relay", cid, "output")


def load_panel_settings(settings: Settings) -> PanelSettings:
    """Parse the panel's keys out of `settings.raw`; raises ConfigError naming file and key."""
    return _Parser(settings.source).panel(settings)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.claimed: dict[int, str] = {}  # BCM number -> the key that took it first

    def error(self, key: str, expected: str) -> ConfigError:
        return ConfigError(self.source, key, expected)

    def panel(self, settings: Settings) -> PanelSettings:
        gpio = settings.raw.get("gpio", {})
        self.check_keys("gpio", gpio, _GPIO_KEYS)
        debounce_ms = self.debounce(gpio)
        emergency_stop = None
        if "emergency_stop" in gpio:
            emergency_stop = self.input(gpio["emergency_stop"], "gpio.emergency_stop")
        connected_led = None
        if "connected_led" in gpio:
            connected_led = self.output(gpio["connected_led"], "gpio.connected_led")
        # Positions as in the core parser: connector[n] counts [[connector]] tables from 1.
        connectors = []
        for n, table in enumerate(settings.raw.get("connector", ()), 1):
            if "gpio" in table:
                connectors.append(
                    self.connector(table["gpio"], f"connector[{n}].gpio", table["id"])
                )
        return PanelSettings(
            source=self.source,
            backend=settings.gpio.backend,
            debounce_s=debounce_ms / 1000,
            connected_led=connected_led,
            emergency_stop=emergency_stop,
            connectors=tuple(sorted(connectors, key=lambda c: c.connector_id)),
        )

    # -- structure -----------------------------------------------------------------------------

    def check_keys(self, prefix: str, table: Mapping[str, Any], known: tuple[str, ...]) -> None:
        for key in table:
            if key not in known:
                raise self.error(
                    f"{prefix}.{key}", f"unknown key; known keys are: {', '.join(known)}"
                )

    def table(self, value: object, key: str, what: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(key, f"expected {what}, got {describe_value(value)}")
        return value

    def debounce(self, gpio: Mapping[str, Any]) -> float:
        value = gpio.get("debounce_ms", DEFAULT_DEBOUNCE_MS)
        expected = f"expected a number of milliseconds from 0 to {MAX_DEBOUNCE_MS:g}"
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or not 0 <= value <= MAX_DEBOUNCE_MS
        ):
            raise self.error("gpio.debounce_ms", f"{expected}, got {describe_value(value)}")
        return float(value)

    # -- pins ----------------------------------------------------------------------------------

    def pin_number(self, value: object, key: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_BCM:
            raise self.error(
                key,
                f"expected a BCM GPIO number (an integer from 0 to {MAX_BCM}), "
                f"got {describe_value(value)}",
            )
        return value

    def claim(self, pin: int, key: str) -> None:
        first = self.claimed.get(pin)
        if first is not None:
            raise self.error(
                key, f"GPIO{pin} is already used by {first}; expected each pin to be used once"
            )
        self.claimed[pin] = key

    def boolean(self, table: Mapping[str, Any], key: str, prefix: str) -> bool | None:
        if key not in table:
            return None
        value = table[key]
        if not isinstance(value, bool):
            raise self.error(
                f"{prefix}.{key}", f"expected true or false, got {describe_value(value)}"
            )
        return value

    def choice(
        self,
        table: Mapping[str, Any],
        key: str,
        prefix: str,
        choices: tuple[str, ...],
        default: str,
    ) -> str:
        value = table.get(key, default)
        if value not in choices:
            expected = " or ".join(f'"{c}"' for c in choices)
            raise self.error(f"{prefix}.{key}", f"expected {expected}, got {describe_value(value)}")
        return str(value)

    def input(
        self,
        value: object,
        key: str,
        *,
        extra: tuple[str, ...] = (),
        modes: bool = True,
    ) -> InputPin:
        """`17`, or `{ pin = 17, pull = "up", active_high = false, mode = "toggle" }`."""
        from hilsim.panel.pins import InputPin

        if not isinstance(value, Mapping):
            pin = self.pin_number(value, key)
            self.claim(pin, key)
            return InputPin(pin, key)
        known = (*_INPUT_KEYS, *(("mode",) if modes else ()), *extra)
        self.check_keys(key, value, known)
        if "pin" not in value:
            raise self.error(f"{key}.pin", "missing key; expected a BCM GPIO number")
        pin = self.pin_number(value["pin"], f"{key}.pin")
        self.claim(pin, f"{key}.pin")
        pull = self.choice(value, "pull", key, PULLS, "up")
        active_high = self.boolean(value, "active_high", key)
        # A pull resistor fixes which level is idle, so it also fixes which level is pressed.
        implied = {"up": False, "down": True}.get(pull)
        if implied is None and active_high is None:
            raise self.error(
                f"{key}.active_high",
                'missing key; with pull = "none" the wiring decides which level means pressed, '
                "expected active_high = true or false",
            )
        if implied is not None and active_high is not None and active_high != implied:
            level = "low" if pull == "up" else "high"
            raise self.error(
                f"{key}.active_high",
                f'expected {str(implied).lower()} with pull = "{pull}" (the pin idles {level}, so '
                f"pressed must read {'high' if implied else 'low'}); for other wiring use "
                f'pull = "none" with an external resistor',
            )
        mode = self.choice(value, "mode", key, INPUT_MODES, "toggle") if modes else "toggle"
        return InputPin(
            pin,
            key,
            pull=pull,
            active_high=implied if active_high is None else active_high,
            mode=mode,
        )

    def output(self, value: object, key: str) -> OutputPin:
        """`26`, or `{ pin = 26, active_high = false }` (most relay boards switch on low)."""
        from hilsim.panel.pins import OutputPin

        if not isinstance(value, Mapping):
            pin = self.pin_number(value, key)
            self.claim(pin, key)
            return OutputPin(pin, key)
        self.check_keys(key, value, _OUTPUT_KEYS)
        if "pin" not in value:
            raise self.error(f"{key}.pin", "missing key; expected a BCM GPIO number")
        pin = self.pin_number(value["pin"], f"{key}.pin")
        self.claim(pin, f"{key}.pin")
        active_high = self.boolean(value, "active_high", key)
        return OutputPin(pin, key, active_high=True if active_high is None else active_high)

    # -- a connector's table -------------------------------------------------------------------

    def connector(self, value: object, prefix: str, connector_id: int) -> ConnectorPanel:
        from hilsim.panel.pins import ConnectorPanel

        table = self.table(value, prefix, "a [connector.gpio] table")
        self.check_keys(prefix, table, _CONNECTOR_GPIO_KEYS)
        plug = self.input(table["plug"], f"{prefix}.plug") if "plug" in table else None
        fault, fault_code = None, ErrorCode.OTHER_ERROR
        if "fault" in table:
            fault = self.input(table["fault"], f"{prefix}.fault", extra=("error_code",))
            fault_code = self.fault_code(table["fault"], f"{prefix}.fault")
        tags = self.tags(table.get("tags", []), f"{prefix}.tags") if "tags" in table else ()
        rgb = self.rgb(table["rgb_led"], f"{prefix}.rgb_led") if "rgb_led" in table else None
        leds = tuple(
            (colour, self.output(table[f"led_{colour}"], f"{prefix}.led_{colour}"))
            for colour in LED_COLOURS
            if f"led_{colour}" in table
        )
        if rgb is not None and leds:
            raise self.error(
                f"{prefix}.{'led_' + leds[0][0]}",
                "expected either rgb_led or separate led_green/led_red/led_amber, not both",
            )
        relay = self.output(table["relay"], f"{prefix}.relay") if "relay" in table else None
        return ConnectorPanel(
            connector_id=connector_id,
            plug=plug,
            fault=fault,
            fault_code=fault_code,
            tags=tags,
            rgb_led=rgb,
            leds=leds,
            relay=relay,
        )

    def fault_code(self, value: object, key: str) -> ErrorCode:
        if not isinstance(value, Mapping) or "error_code" not in value:
            return ErrorCode.OTHER_ERROR
        code = value["error_code"]
        choices = [c.value for c in ErrorCode if c != ErrorCode.NO_ERROR]
        if code not in choices:
            raise self.error(
                f"{key}.error_code",
                f"expected an OCPP ChargePointErrorCode other than NoError ({', '.join(choices)}), "
                f"got {describe_value(code)}",
            )
        return ErrorCode(code)

    def tags(self, value: object, key: str) -> tuple[TagButton, ...]:
        from hilsim.panel.pins import TagButton

        if not isinstance(value, list | tuple):
            raise self.error(
                key,
                f'expected an array like [{{ pin = 27, id_tag = "04A2B3C4" }}], '
                f"got {describe_value(value)}",
            )
        tags = []
        for n, item in enumerate(value, 1):
            at = f"{key}[{n}]"
            table = self.table(item, at, 'a table like { pin = 27, id_tag = "04A2B3C4" }')
            if "id_tag" not in table:
                raise self.error(
                    f"{at}.id_tag", "missing key; expected the idTag this button presents"
                )
            id_tag = table["id_tag"]
            if not isinstance(id_tag, str) or not id_tag.strip() or len(id_tag) > ID_TAG_MAX_LENGTH:
                raise self.error(
                    f"{at}.id_tag",
                    f"expected a non-empty string of at most {ID_TAG_MAX_LENGTH} characters "
                    f"(OCPP 1.6 IdToken), got {describe_value(id_tag)}",
                )
            tags.append(TagButton(self.input(table, at, extra=("id_tag",), modes=False), id_tag))
        return tuple(tags)

    def rgb(self, value: object, key: str) -> RgbLed:
        from hilsim.panel.pins import OutputPin, RgbLed

        table = self.table(value, key, "a table like { red = 5, green = 6, blue = 13 }")
        self.check_keys(key, table, ("red", "green", "blue", "common"))
        pins = {}
        for colour in ("red", "green", "blue"):
            if colour not in table:
                raise self.error(f"{key}.{colour}", "missing key; expected a BCM GPIO number")
            pin = self.pin_number(table[colour], f"{key}.{colour}")
            self.claim(pin, f"{key}.{colour}")
            pins[colour] = pin
        common = self.choice(table, "common", key, RGB_COMMONS, "cathode")
        high = common == "cathode"
        return RgbLed(
            red=OutputPin(pins["red"], f"{key}.red", high),
            green=OutputPin(pins["green"], f"{key}.green", high),
            blue=OutputPin(pins["blue"], f"{key}.blue", high),
            common=common,
            key=key,
        )
