"""The physical panel: GPIO buttons and status LEDs through gpiozero, on a Pi or on mock pins.

`config` parses the pin map into `pins` (the pin types, loaded with the first pin named),
`backend` picks the gpiozero pin factory, `devices` owns the gpiozero objects, `bridge` is the one
hop from gpiozero's threads to the event loop, `lights` is the LED language, `panel` wires it all
to the charger and `selftest` is `hilsim gpio test`.
"""

from __future__ import annotations

import importlib
from typing import Any

# Loaded on first use (PEP 562): a charge point with no pins configured never imports gpiozero,
# which is a measurable share of a Pi Zero's start-up.
_EXPORTS = {
    "mock_factory": "hilsim.panel.backend",
    "open_pin_factory": "hilsim.panel.backend",
    "PanelSettings": "hilsim.panel.config",
    "load_panel_settings": "hilsim.panel.config",
    "PANEL_COMMANDS": "hilsim.panel.config",
    "Panel": "hilsim.panel.panel",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hilsim.panel' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
