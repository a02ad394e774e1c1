"""The plain-HTTP side of the demo page's server: its static files and the responses' headers.

Kept apart from the live WebSocket side (:mod:`hilsim.web.push`) and the server that routes
between them (:mod:`hilsim.web.server`): these are the rules every answer follows (no caching,
no sniffing, no framing, a Content-Security-Policy that allows nothing foreign).
"""

from __future__ import annotations

import contextlib
import email.utils
import ipaddress
from http import HTTPStatus
from importlib import resources
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Response

#: Path -> (file under hilsim/web/static, content type).
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
    "/static/icon.svg": ("icon.svg", "image/svg+xml"),
    "/favicon.ico": ("icon.svg", "image/svg+xml"),
}
#: Everything the page loads comes from here: a demo hall often has no internet, and a page that
#: cannot load a foreign script cannot be made to run one.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def load_assets() -> dict[str, bytes]:
    """The static files, read once at start: file name -> content."""
    package = resources.files("hilsim.web").joinpath("static")
    return {name: package.joinpath(name).read_bytes() for name, _ in ASSETS.values()}


def asset_response(assets: dict[str, bytes], path: str) -> Response | None:
    """The static file at `path` (the page gets the CSP), or None if `path` is not one."""
    if path not in ASSETS:
        return None
    name, content_type = ASSETS[path]
    extra = {"Content-Security-Policy": CSP} if name == "index.html" else {}
    return response(200, assets[name], content_type, **extra)


def response(status: int, body: bytes, content_type: str, **headers: str) -> Response:
    fields = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("X-Frame-Options", "DENY"),
        ]
    )
    for name, value in headers.items():
        fields[name.replace("_", "-")] = value
    return Response(status, HTTPStatus(status).phrase, fields, body)


def same_origin(origin: str, host: str | None) -> bool:
    try:
        netloc = urlsplit(origin).netloc.lower()
    except ValueError:
        return False
    return bool(host) and netloc == str(host).lower()


def peer_address(ws: ServerConnection) -> str:
    """The client's address as a person reads it (an IPv4-mapped IPv6 address as IPv4)."""
    remote = ws.remote_address
    if isinstance(remote, tuple) and remote:
        text = str(remote[0])
        with contextlib.suppress(ValueError):
            mapped = ipaddress.ip_address(text)
            if isinstance(mapped, ipaddress.IPv6Address) and mapped.ipv4_mapped:
                return str(mapped.ipv4_mapped)
        return text
    return "local"
