"""`hilsim gpio test`: check the wiring of a panel in a minute, without a charger or a CSMS.

It lights every configured LED colour and closes every relay in turn, naming the pin each time
(so a swapped wire shows up as the wrong colour at the right moment), reads each output back from
its pin, then prints every button edge as it happens until the time is up or Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from gpiozero import Factory

from hilsim.panel.bridge import LoopBridge
from hilsim.panel.config import PanelSettings
from hilsim.panel.devices import InputBinding, PanelHardware
from hilsim.panel.lamps import RgbLamp, SeparateLamp
from hilsim.panel.lights import RGB, RGB_NO_PWM
from hilsim.panel.pins import OutputPin

log = logging.getLogger(__name__)


async def self_test(
    settings: PanelSettings,
    factory: Factory | None,
    out: Callable[[str], None],
    *,
    backend: str = "",
    step_s: float = 1.0,
    listen_s: float | None = 60.0,
    stop: asyncio.Event | None = None,
) -> int:
    """Walk every output, then report inputs for `listen_s` seconds (None: until `stop`)."""
    if settings.empty:
        out(f"{settings.source}: no GPIO pins configured ([gpio] and [connector.gpio] tables)")
        return 0
    assert factory is not None, "pins are configured, so a pin factory is needed"
    loop = asyncio.get_running_loop()
    bridge = LoopBridge(loop)

    def report(binding: InputBinding, active: bool) -> None:
        level = int(bool(binding.device.pin.state))
        out(f"  {binding.label} {'pressed' if active else 'released'} (level {level})")

    hardware = PanelHardware.build(
        settings, factory, lambda binding, active: bridge.post(report, binding, active)
    )
    try:
        out(f"GPIO self-test on {backend or type(factory).__name__} ({hardware.board()})")
        if backend == "mock":
            out("mock pins: a rehearsal, nothing is wired; on the Pi this lights the real panel")
        await _walk_outputs(hardware, out, step_s)
        if hardware.inputs:
            listed = ", ".join(b.label for b in hardware.inputs)
            how = "until Ctrl-C" if listen_s is None else f"for {listen_s:g} s"
            out(f"listening to {len(hardware.inputs)} input(s) {how}: {listed}")
            waiting = (stop or asyncio.Event()).wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiting, listen_s)
        out("self-test done")
    finally:
        bridge.close()
        hardware.close()
    return 0


async def _walk_outputs(hardware: PanelHardware, out: Callable[[str], None], step_s: float) -> None:
    """One output at a time, each read back from its pin."""
    colours = RGB if hardware.pwm else RGB_NO_PWM

    async def hold(
        what: str,
        spec: OutputPin,
        on: Callable[[], None],
        off: Callable[[], None],
    ) -> None:
        on()
        level = float(hardware.factory.pin(spec.pin).state)
        low = "" if spec.active_high else ", active low"
        out(f"  {what}: on (GPIO{spec.pin} reads {level:g}{low})")
        await asyncio.sleep(step_s)
        off()

    if hardware.connected is not None:
        led = hardware.connected.led
        spec = hardware.connected.spec
        await hold(f"CSMS connected LED (GPIO{spec.pin})", spec, led.on, led.off)
    for cid in sorted({*hardware.lamps, *hardware.relays}):
        lamp = hardware.lamps.get(cid)
        if isinstance(lamp, RgbLamp):
            rgb = lamp.led
            for channel, spec in lamp.spec.channels:
                colour = colours[channel]
                await hold(
                    f"connector {cid} RGB LED {channel} (GPIO{spec.pin})",
                    spec,
                    lambda rgb=rgb, colour=colour: setattr(rgb, "color", colour),
                    rgb.off,
                )
        elif isinstance(lamp, SeparateLamp):
            for colour, led in lamp.leds.items():
                spec = lamp.specs[colour]
                await hold(f"connector {cid} {colour} LED (GPIO{spec.pin})", spec, led.on, led.off)
        relay = hardware.relays.get(cid)
        if relay is not None:
            await hold(
                f"connector {cid} relay (GPIO{relay.spec.pin}, listen for the click)",
                relay.spec,
                lambda relay=relay: relay.set(True),
                lambda relay=relay: relay.set(False),
            )
