"""The physical panel: GPIO buttons and status LEDs through gpiozero, on a Pi or on mock pins.

`config` parses the pin map, `backend` picks the gpiozero pin factory, `devices` owns the gpiozero
objects, `bridge` is the one hop from gpiozero's threads to the event loop, `lights` is the LED
language, `panel` wires it all to the charger and `selftest` is `hilsim gpio test`.
"""

from hilsim.panel.backend import mock_factory, open_pin_factory
from hilsim.panel.config import PanelSettings, load_panel_settings
from hilsim.panel.panel import PANEL_COMMANDS, Panel

__all__ = [
    "PANEL_COMMANDS",
    "Panel",
    "PanelSettings",
    "load_panel_settings",
    "mock_factory",
    "open_pin_factory",
]
