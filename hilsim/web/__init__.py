"""The demo page: a live view of the charger in a browser, with virtual buttons.

`config` reads `[web]`, `server` serves the page and its WebSocket from the service's own loop,
`frames` keeps the OCPP message log, `view` picks what a browser may see, `auth` guards the
buttons, `estop` is the page's emergency stop. The page itself is `static/`: hand-written HTML,
CSS and JavaScript, served from the package, no build step and nothing fetched from elsewhere.
"""

from hilsim.web.config import WebSettings, demo_listen, load_web_settings, with_web
from hilsim.web.server import WebServer

__all__ = ["WebServer", "WebSettings", "demo_listen", "load_web_settings", "with_web"]
