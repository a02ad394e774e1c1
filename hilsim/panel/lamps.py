"""The outputs of the panel: a connector's lamp (one RGB LED or separate LEDs), a single LED
and a relay, each showing what it is told and describing itself for the web page.

Apart from :mod:`hilsim.panel.devices`, which claims the pins and builds these, so each kind of
output's drawing rules are read in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gpiozero import LED, PWMLED, RGBLED, DigitalOutputDevice

from hilsim.panel.lights import (
    NO_PWM_PULSE,
    RGB,
    RGB_NO_PWM,
    TIMINGS,
    Indication,
    Pattern,
    Timing,
    separate_leds_for,
)
from hilsim.panel.pins import OutputPin

log = logging.getLogger(__name__)

__all__ = ["OutputView", "Relay", "RgbLamp", "SeparateLamp", "SingleLed"]


@dataclass(frozen=True, slots=True)
class OutputView:
    """An output pin as `hilsim ctl pins` shows it."""

    spec: OutputPin
    role: str
    connector_id: int | None
    on: bool
    pattern: str  # off | steady | blinking | pulsing
    colour: str | None
    timing: Timing | None = None


def _blink_args(pattern: Pattern, pwm: bool) -> Timing:
    if pattern == Pattern.PULSE and not pwm:
        return NO_PWM_PULSE
    return TIMINGS[pattern]


def _kind(pattern: Pattern, pwm: bool) -> str:
    if pattern == Pattern.PULSE and not pwm:
        return "blinking"
    return pattern.kind


class RgbLamp:
    """One RGB LED showing a connector's status with gpiozero's own blink and pulse threads."""

    def __init__(self, led: RGBLED, spec: Any, connector_id: int, pwm: bool) -> None:
        self.led = led
        self.spec = spec
        self.connector_id = connector_id
        self.pwm = pwm
        self.indication: Indication | None = None

    def show(self, indication: Indication) -> None:
        if indication == self.indication:
            return  # restarting a blink would make it stutter on every repeated status
        self.indication = indication
        colour = (RGB if self.pwm else RGB_NO_PWM)[indication.colours[0]]
        pattern = indication.pattern
        if pattern == Pattern.OFF:
            self.led.off()
        elif pattern == Pattern.STEADY:
            self.led.color = colour
        elif pattern == Pattern.PULSE and self.pwm:
            t = TIMINGS[pattern]
            self.led.pulse(t.fade_in_s, t.fade_out_s, on_color=colour)
        else:
            t = _blink_args(pattern, self.pwm)
            self.led.blink(t.on_s, t.off_s, on_color=colour)

    def views(self) -> Iterator[OutputView]:
        """Per channel: a channel not in the mix is off, the others show the LED's colour."""
        ind = self.indication
        pattern = ind.pattern if ind else Pattern.OFF
        mix = (RGB if self.pwm else RGB_NO_PWM)[ind.colours[0]] if ind else (0.0, 0.0, 0.0)
        for (channel, out), share in zip(self.spec.channels, mix, strict=True):
            on = pattern != Pattern.OFF and share > 0
            yield OutputView(
                out,
                f"rgb_led.{channel}",
                self.connector_id,
                on,
                _kind(pattern, self.pwm) if on else "off",
                ind.colour if on and ind else None,
                _timing_or_none(pattern, self.pwm) if on else None,
            )

    def close(self) -> None:
        self.led.close()


class SeparateLamp:
    """Separate green, amber and red LEDs; only the fitted ones light, with stand-ins for others."""

    def __init__(
        self,
        leds: dict[str, PWMLED | LED],
        specs: dict[str, OutputPin],
        connector_id: int,
        pwm: bool,
    ) -> None:
        self.leds = leds
        self.specs = specs
        self.connector_id = connector_id
        self.pwm = pwm
        self.fitted = frozenset(leds)
        self.indication: Indication | None = None
        self.lit: frozenset[str] = frozenset()

    def show(self, indication: Indication) -> None:
        if indication == self.indication:
            return
        self.indication = indication
        self.lit = separate_leds_for(indication.colours, self.fitted)
        for colour, led in self.leds.items():
            if colour in self.lit:
                _show_single(led, indication.pattern, self.pwm)
            else:
                led.off()

    def views(self) -> Iterator[OutputView]:
        pattern = self.indication.pattern if self.indication else Pattern.OFF
        for colour, spec in self.specs.items():
            on = colour in self.lit and pattern != Pattern.OFF
            yield OutputView(
                spec,
                f"led_{colour}",
                self.connector_id,
                on,
                _kind(pattern, self.pwm) if on else "off",
                colour,
                _timing_or_none(pattern, self.pwm) if on else None,
            )

    def close(self) -> None:
        for led in self.leds.values():
            led.close()


def _timing_or_none(pattern: Pattern, pwm: bool) -> Timing | None:
    if pattern in (Pattern.OFF, Pattern.STEADY):
        return None
    return _blink_args(pattern, pwm)


def _show_single(led: PWMLED | LED, pattern: Pattern, pwm: bool) -> None:
    if pattern == Pattern.OFF:
        led.off()
    elif pattern == Pattern.STEADY:
        led.on()
    elif pattern == Pattern.PULSE and pwm and isinstance(led, PWMLED):
        t = TIMINGS[pattern]
        led.pulse(t.fade_in_s, t.fade_out_s)
    else:
        t = _blink_args(pattern, pwm)
        led.blink(t.on_s, t.off_s)


class SingleLed:
    """The "CSMS connected" LED."""

    def __init__(self, led: LED, spec: OutputPin) -> None:
        self.led = led
        self.spec = spec
        self.pattern = Pattern.OFF

    def show(self, pattern: Pattern) -> None:
        if pattern != self.pattern:
            self.pattern = pattern
            _show_single(self.led, pattern, pwm=False)

    def view(self) -> OutputView:
        on = self.pattern != Pattern.OFF
        return OutputView(
            self.spec,
            "connected_led",
            None,
            on,
            self.pattern.kind,
            "on" if on else None,
            _timing_or_none(self.pattern, False),
        )

    def close(self) -> None:
        self.led.close()


class Relay:
    """A relay or contactor driver: closed exactly while energy is offered."""

    def __init__(self, device: DigitalOutputDevice, spec: OutputPin, connector_id: int) -> None:
        self.device = device
        self.spec = spec
        self.connector_id = connector_id

    @property
    def closed(self) -> bool:
        return bool(self.device.value)

    def set(self, closed: bool) -> None:
        if closed != self.closed:
            log.info(
                "C%d relay GPIO%d %s",
                self.connector_id,
                self.spec.pin,
                "closed" if closed else "open",
            )
            self.device.value = closed

    def view(self) -> OutputView:
        closed = self.closed
        return OutputView(
            self.spec,
            "relay",
            self.connector_id,
            closed,
            "steady" if closed else "off",
            "closed" if closed else "open",
        )

    def close(self) -> None:
        self.device.close()
