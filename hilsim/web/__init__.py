"""The demo page: a live view of the charger in a browser, with virtual buttons.

`config` reads `[web]`, `server` serves the page and its WebSocket from the service's own loop,
`frames` keeps the OCPP message log, `view` picks what a browser may see, `auth` guards the
buttons, `estop` is the page's emergency stop. The page itself is `static/`: hand-written HTML,
CSS and JavaScript, served from the package, no build step and nothing fetched from elsewhere.
"""

from __future__ import annotations

import importlib
from typing import Any

# Loaded on first use (PEP 562): with no [web] listen, the server module is never imported.
_EXPORTS = {
    "WebSettings": "hilsim.web.config",
    "demo_listen": "hilsim.web.config",
    "load_web_settings": "hilsim.web.config",
    "with_web": "hilsim.web.config",
    "WebServer": "hilsim.web.server",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hilsim.web' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
