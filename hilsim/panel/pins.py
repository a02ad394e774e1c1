"""What a configured pin is: the values `hilsim.panel.config` reads out of the TOML file and
`devices`, `lamps` and `selftest` build the panel from.

Apart from the parser because a charge point with no pin configured (a laptop, the bench) never
builds one: `config` imports this module when the file names its first pin, so such a start
does not pay for creating these classes.
"""

from __future__ import annotations

from dataclasses import dataclass

from hilsim.evse import ErrorCode


@dataclass(frozen=True, slots=True)
class InputPin:
    """A button or switch. `key` is the dotted config key, quoted in every error about it."""

    pin: int
    key: str
    pull: str = "up"  # "up" | "down" | "none" (an external resistor)
    active_high: bool = False  # pressed reads high
    mode: str = "toggle"  # "toggle": each press flips; "level": a latching switch read as level

    @property
    def pull_up(self) -> bool | None:
        """gpiozero's spelling: True, False, or None for floating."""
        return {"up": True, "down": False, "none": None}[self.pull]


@dataclass(frozen=True, slots=True)
class OutputPin:
    """An LED, relay driver or other output."""

    pin: int
    key: str
    active_high: bool = True  # on drives the pin high


@dataclass(frozen=True, slots=True)
class TagButton:
    """A button that presents one fixed RFID idTag, as a card held to the reader would."""

    button: InputPin
    id_tag: str


@dataclass(frozen=True, slots=True)
class RgbLed:
    """One RGB LED; a common anode LED lights when its pins are driven low."""

    red: OutputPin
    green: OutputPin
    blue: OutputPin
    common: str  # "cathode" | "anode"
    key: str

    @property
    def active_high(self) -> bool:
        return self.common == "cathode"

    @property
    def channels(self) -> tuple[tuple[str, OutputPin], ...]:
        return (("red", self.red), ("green", self.green), ("blue", self.blue))


@dataclass(frozen=True, slots=True)
class ConnectorPanel:
    """The pins that belong to one connector."""

    connector_id: int
    plug: InputPin | None = None
    fault: InputPin | None = None
    fault_code: ErrorCode = ErrorCode.OTHER_ERROR
    tags: tuple[TagButton, ...] = ()
    rgb_led: RgbLed | None = None
    leds: tuple[tuple[str, OutputPin], ...] = ()  # (colour, pin) for separate LEDs
    relay: OutputPin | None = None


@dataclass(frozen=True, slots=True)
class PinUse:
    """One configured pin: what `hilsim ctl pins` lists and what duplicate checks compare."""

    pin: int
    key: str
    role: str
    connector_id: int | None
    direction: str  # "input" | "output"

    @classmethod
    def of(cls, spec: InputPin | OutputPin, role: str, cid: int | None, direction: str) -> PinUse:
        return cls(spec.pin, spec.key, role, cid, direction)
