"""gpiozero devices for the configured pins: buttons in, LEDs and relays out.

This module owns every gpiozero object and knows nothing of chargers or event loops: it reports
inputs to a callback (on gpiozero's threads) and shows whatever it is told. That keeps it usable
by both the service's panel and `hilsim gpio test`, and keeps the one thread -> loop hop in
`bridge.py`. Every gpiozero failure while claiming a pin leaves here as a PanelError naming the
file, the config key and the pin; the devices already claimed are released first.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gpiozero import LED, PWMLED, RGBLED, DigitalInputDevice, DigitalOutputDevice, Factory
from gpiozero.exc import GPIOPinInUse, PinFixedPull, PinInvalidPin, PinPWMUnsupported

from hilsim.errors import PanelError
from hilsim.panel.config import PanelSettings
from hilsim.panel.lamps import OutputView, Relay, RgbLamp, SeparateLamp, SingleLed
from hilsim.panel.pins import InputPin, OutputPin

log = logging.getLogger(__name__)

InputCallback = Callable[["InputBinding", bool], None]


@dataclass(slots=True)
class InputBinding:
    """One button or switch and what it means.

    A DigitalInputDevice rather than gpiozero's Button: the same edges and debounce, without
    Button's hold thread, which wakes ten times a second per button and takes 0.1 s to stop.
    """

    spec: InputPin
    role: str  # "plug" | "fault" | "tag" | "emergency_stop"
    connector_id: int | None
    device: DigitalInputDevice
    id_tag: str | None = None

    @property
    def label(self) -> str:
        where = "all connectors" if self.connector_id is None else f"connector {self.connector_id}"
        what = f"tag {self.id_tag}" if self.id_tag else self.role.replace("_", " ")
        return f"GPIO{self.spec.pin} {what} ({where})"


@dataclass(frozen=True, slots=True)
class Action:
    """What one input edge did: the event it produced and how the connector took it (kept by
    the panel for `hilsim ctl press`; here, with the inputs, since only they make one)."""

    seq: int
    pin: int
    event: str | None
    connector_id: int | None
    result: str


@dataclass
class PanelHardware:
    """Every claimed device. `build` claims them all or none."""

    settings: PanelSettings
    factory: Factory
    inputs: list[InputBinding] = field(default_factory=list)
    lamps: dict[int, RgbLamp | SeparateLamp] = field(default_factory=dict)
    relays: dict[int, Relay] = field(default_factory=dict)
    connected: SingleLed | None = None
    pwm: bool = True

    @classmethod
    def build(
        cls, settings: PanelSettings, factory: Factory, on_input: InputCallback
    ) -> PanelHardware:
        hardware = cls(settings, factory)
        try:
            hardware._build(on_input)
        except BaseException:
            hardware.close()
            raise
        return hardware

    def _build(self, on_input: InputCallback) -> None:
        s = self.settings
        if s.emergency_stop is not None:
            self._input(s.emergency_stop, "emergency_stop", None, None, on_input)
        if s.connected_led is not None:
            spec = s.connected_led
            self.connected = SingleLed(
                self._claim({spec.pin: spec.key}, lambda: self._led(spec, pwm=False)), spec
            )
        for c in s.connectors:
            cid = c.connector_id
            if c.plug is not None:
                self._input(c.plug, "plug", cid, None, on_input)
            if c.fault is not None:
                self._input(c.fault, "fault", cid, None, on_input)
            for tag in c.tags:
                self._input(tag.button, "tag", cid, tag.id_tag, on_input)
            if c.rgb_led is not None:
                rgb = c.rgb_led
                led = self._pwm_or_not(
                    {out.pin: out.key for _, out in rgb.channels},
                    lambda pwm, rgb=rgb: RGBLED(
                        rgb.red.pin,
                        rgb.green.pin,
                        rgb.blue.pin,
                        active_high=rgb.active_high,
                        pwm=pwm,
                        pin_factory=self.factory,
                    ),
                )
                self.lamps[cid] = RgbLamp(led, rgb, cid, self.pwm)
            if c.leds:
                leds: dict[str, PWMLED | LED] = {}
                for colour, spec in c.leds:
                    leds[colour] = self._pwm_or_not(
                        {spec.pin: spec.key}, lambda pwm, spec=spec: self._led(spec, pwm)
                    )
                self.lamps[cid] = SeparateLamp(leds, dict(c.leds), cid, self.pwm)
            if c.relay is not None:
                spec = c.relay
                device = self._claim(
                    {spec.pin: spec.key},
                    lambda spec=spec: DigitalOutputDevice(
                        spec.pin,
                        active_high=spec.active_high,
                        initial_value=False,
                        pin_factory=self.factory,
                    ),
                )
                self.relays[cid] = Relay(device, spec, cid)

    # -- claiming ------------------------------------------------------------------------------

    def _led(self, spec: OutputPin, pwm: bool) -> PWMLED | LED:
        cls = PWMLED if pwm else LED
        return cls(spec.pin, active_high=spec.active_high, pin_factory=self.factory)

    def _pwm_or_not(self, keys: dict[int, str], make: Callable[[bool], Any]) -> Any:
        """Breathing needs PWM; a backend without it (native) gets on/off LEDs and a warning."""
        if self.pwm:
            try:
                return self._claim(keys, lambda: make(True))
            except _NoPwm:
                self.pwm = False
                log.warning(
                    "GPIO backend %s has no PWM: LEDs cannot breathe or show amber; Charging "
                    "blinks slowly instead",
                    type(self.factory).__name__,
                )
        return self._claim(keys, lambda: make(False))

    def _input(
        self,
        spec: InputPin,
        role: str,
        cid: int | None,
        id_tag: str | None,
        on_input: InputCallback,
    ) -> None:
        bounce = self.settings.debounce_s or None
        device = self._claim(
            {spec.pin: spec.key},
            lambda: DigitalInputDevice(
                spec.pin,
                pull_up=spec.pull_up,
                active_state=spec.active_high if spec.pull_up is None else None,
                bounce_time=bounce,
                pin_factory=self.factory,
            ),
        )
        binding = InputBinding(spec, role, cid, device, id_tag)
        # Called on gpiozero's threads; on_input must only hand the news on.
        device.when_activated = lambda: on_input(binding, True)
        device.when_deactivated = lambda: on_input(binding, False)
        self.inputs.append(binding)

    def _claim(self, keys: dict[int, str], make: Callable[[], Any]) -> Any:
        """Create a device on the pins in `keys` (pin -> config key), translating failures."""
        source = self.settings.source
        try:
            return make()
        except PinPWMUnsupported:
            raise _NoPwm() from None
        except GPIOPinInUse as exc:
            pin, key = _culprit(exc, keys)
            raise PanelError(
                f"{source}: {key}: GPIO{pin} is busy ({exc}); expected a pin nothing else in this "
                f"process uses"
            ) from None
        except PinInvalidPin as exc:
            pin, key = _culprit(exc, keys)
            raise PanelError(
                f"{source}: {key}: GPIO{pin} does not exist on this board ({self.board()}); "
                f"expected one of its GPIO numbers: {self.header_gpios()}"
            ) from None
        except PinFixedPull as exc:
            pin, key = _culprit(exc, keys)
            raise PanelError(
                f"{source}: {key}: GPIO{pin} has a fixed pull-up resistor on this board; "
                f'expected pull = "up" for this pin, or another pin'
            ) from None
        except Exception as exc:  # the real backends raise their own types (lgpio.error, OSError)
            pin, key = _culprit(exc, keys)
            text = str(exc)
            if "busy" in text.lower():
                raise PanelError(
                    f"{source}: {key}: GPIO{pin} is busy ({text}); expected a pin no other program "
                    f"holds (is `hilsim run` or another GPIO program running?)"
                ) from None
            raise PanelError(
                f"{source}: {key}: GPIO{pin}: {type(exc).__name__}: {text}; expected a usable "
                f"GPIO pin"
            ) from None

    def board(self) -> str:
        try:
            return str(self.factory.board_info.description)
        except Exception:
            return type(self.factory).__name__

    def header_gpios(self) -> str:
        try:
            numbers = sorted(
                int(p.name[4:])
                for header in self.factory.board_info.headers.values()
                for p in header.pins.values()
                if p.name.startswith("GPIO")
            )
        except Exception:
            return "see the board's pinout"
        return _ranges(numbers)

    def header_position(self, pin: int) -> str | None:
        """Where to put the wire, e.g. "J8:11" for GPIO17 on a 40-pin header."""
        try:
            for header, info in self.factory.board_info.find_pin(f"GPIO{pin}"):
                return f"{header.name}:{info.number}"
        except Exception:
            return None
        return None

    # -- everything out ------------------------------------------------------------------------

    def outputs(self) -> Iterator[OutputView]:
        if self.connected is not None:
            yield self.connected.view()
        for cid in sorted({*self.lamps, *self.relays}):
            if cid in self.lamps:
                yield from self.lamps[cid].views()
            if cid in self.relays:
                yield self.relays[cid].view()

    def close(self) -> None:
        """Release every pin: LEDs dark, relays open (gpiozero drives outputs off on close)."""
        for relay in self.relays.values():
            relay.close()
        for lamp in self.lamps.values():
            lamp.close()
        if self.connected is not None:
            self.connected.close()
        for binding in self.inputs:
            binding.device.when_activated = None
            binding.device.when_deactivated = None
            binding.device.close()
        self.relays.clear()
        self.lamps.clear()
        self.inputs.clear()
        self.connected = None


class _NoPwm(Exception):
    pass


def _culprit(exc: Exception, keys: dict[int, str]) -> tuple[int, str]:
    """Which of a device's pins gpiozero complained about (an RGB LED claims three)."""
    if len(keys) > 1:
        text = str(exc)
        for pin, key in keys.items():
            if re.search(rf"(?<![0-9]){pin}(?![0-9])", text):
                return pin, key
    pin = next(iter(keys))
    return pin, keys[pin]


def _ranges(numbers: list[int]) -> str:
    parts: list[str] = []
    start = prev = None
    for n in numbers:
        if start is None:
            start = prev = n
        elif n == prev + 1:  # type: ignore[operator]
            prev = n
        else:
            parts.append(f"{start}" if start == prev else f"{start} to {prev}")
            start = prev = n
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start} to {prev}")
    return ", ".join(parts)
