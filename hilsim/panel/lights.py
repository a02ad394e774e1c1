"""The LED language: which colour and rhythm shows each connector status and the CSMS link.

Kept as data with no gpiozero in it, so the README table and the tests read the same thing the
panel shows. Colour says *what* (green free, amber waiting or done, blue energy, red trouble);
rhythm says *how urgent* (steady, a 1 Hz blink, a slow blink, breathing, a fast blink). Anyone
who has seen a traffic light can read it across a room without the manual.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from hilsim.evse import Status
from hilsim.ocpp.session import LinkState


class Pattern(StrEnum):
    OFF = "off"
    STEADY = "steady"
    BLINK = "blink"  # 1 Hz: something is about to happen
    SLOW_BLINK = "slow blink"  # paused
    FAST_BLINK = "fast blink"  # 5 Hz: needs a person
    PULSE = "pulse"  # breathing: energy flows
    WINK = "wink"  # a steady light with a short dark gap: the same status, but offline
    FLASH = "flash"  # a short flash every 2 s: searching for the CSMS

    @property
    def kind(self) -> str:
        """What `hilsim ctl pins` reports: off, steady, blinking or pulsing."""
        if self in (Pattern.OFF, Pattern.STEADY):
            return str(self.value)
        return "pulsing" if self == Pattern.PULSE else "blinking"


@dataclass(frozen=True, slots=True)
class Timing:
    """Arguments for gpiozero's blink(): seconds on, off, fading in and out."""

    on_s: float
    off_s: float
    fade_in_s: float = 0.0
    fade_out_s: float = 0.0


TIMINGS: dict[Pattern, Timing] = {
    Pattern.BLINK: Timing(0.5, 0.5),
    Pattern.SLOW_BLINK: Timing(0.5, 1.5),
    Pattern.FAST_BLINK: Timing(0.1, 0.1),
    Pattern.PULSE: Timing(0.0, 0.0, 1.0, 1.0),
    Pattern.WINK: Timing(1.8, 0.2),
    Pattern.FLASH: Timing(0.1, 1.9),
}

#: Without PWM an LED cannot fade; breathing becomes a slow even blink (1 s on, 1 s off).
NO_PWM_PULSE = Timing(1.0, 1.0)

#: RGB mixes. Amber needs PWM; on/off-only pins show it as yellow.
RGB: dict[str, tuple[float, float, float]] = {
    "green": (0.0, 1.0, 0.0),
    "amber": (1.0, 0.5, 0.0),
    "red": (1.0, 0.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
}
RGB_NO_PWM: dict[str, tuple[float, float, float]] = {**RGB, "amber": (1.0, 1.0, 0.0)}


@dataclass(frozen=True, slots=True)
class Indication:
    """What one connector's light shows: the colours lit and their rhythm."""

    colours: tuple[str, ...]
    pattern: Pattern

    @property
    def colour(self) -> str:
        return "+".join(self.colours) if self.colours else "none"


def _i(colours: str, pattern: Pattern) -> Indication:
    return Indication(tuple(colours.split("+")), pattern)


#: One RGB LED per connector.
RGB_LANGUAGE: dict[Status, Indication] = {
    Status.AVAILABLE: _i("green", Pattern.STEADY),
    Status.PREPARING: _i("amber", Pattern.BLINK),
    Status.CHARGING: _i("blue", Pattern.PULSE),
    Status.SUSPENDED_EV: _i("blue", Pattern.SLOW_BLINK),
    Status.SUSPENDED_EVSE: _i("amber", Pattern.SLOW_BLINK),
    Status.FINISHING: _i("amber", Pattern.STEADY),
    Status.RESERVED: _i("blue", Pattern.STEADY),
    Status.UNAVAILABLE: _i("red", Pattern.STEADY),
    Status.FAULTED: _i("red", Pattern.FAST_BLINK),
}

#: Separate green, amber and red LEDs: no blue, so energy shows on green and Reserved lights two.
SEPARATE_LANGUAGE: dict[Status, Indication] = {
    Status.AVAILABLE: _i("green", Pattern.STEADY),
    Status.PREPARING: _i("amber", Pattern.BLINK),
    Status.CHARGING: _i("green", Pattern.PULSE),
    Status.SUSPENDED_EV: _i("green", Pattern.SLOW_BLINK),
    Status.SUSPENDED_EVSE: _i("amber", Pattern.SLOW_BLINK),
    Status.FINISHING: _i("amber", Pattern.STEADY),
    Status.RESERVED: _i("green+amber", Pattern.STEADY),
    Status.UNAVAILABLE: _i("red", Pattern.STEADY),
    Status.FAULTED: _i("red", Pattern.FAST_BLINK),
}

#: The optional "CSMS connected" LED.
LINK_LANGUAGE: dict[LinkState, Pattern] = {
    LinkState.CONNECTED: Pattern.STEADY,
    LinkState.PENDING: Pattern.BLINK,  # the CSMS answered but has not accepted us yet
    LinkState.BOOTING: Pattern.FLASH,
    LinkState.CONNECTING: Pattern.FLASH,
    LinkState.DISCONNECTED: Pattern.FLASH,
}


def connector_indication(status: Status, *, rgb: bool, online: bool) -> Indication:
    """The light for a status; offline, a steady light winks so a glance shows the link is down.

    Blinking statuses keep their rhythm offline: they already say "look here", and a second
    rhythm on top would make them unreadable.
    """
    shown = (RGB_LANGUAGE if rgb else SEPARATE_LANGUAGE)[status]
    if not online and shown.pattern == Pattern.STEADY:
        return replace(shown, pattern=Pattern.WINK)
    return shown


#: Which LED stands in for a missing one: a red+green pair makes amber, as bi-colour LEDs do.
_STAND_INS: dict[str, tuple[tuple[str, ...], ...]] = {
    "green": (("green",), ("amber",)),
    "amber": (("amber",), ("red", "green"), ("green",), ("red",)),
    "red": (("red",), ("amber",)),
}


def separate_leds_for(colours: tuple[str, ...], fitted: frozenset[str]) -> frozenset[str]:
    """The fitted LEDs to light for the wanted colours, so a two-LED panel still says something."""
    lit: set[str] = set()
    for colour in colours:
        for option in _STAND_INS.get(colour, ()):
            if all(c in fitted for c in option):
                lit.update(option)
                break
    return frozenset(lit)
