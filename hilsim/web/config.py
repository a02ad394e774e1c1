"""The `[web]` table: where the demo page listens, and the password that unlocks its buttons.

Off unless `listen` is set, and then bound to 127.0.0.1 unless an address says otherwise: a page
with buttons on a demo hall's Wi-Fi is something a person turns on on purpose. The password is
read once at start (from the file or from `password_file`), so a typo fails before anything runs.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hilsim.config import EMBEDDED_SOURCE, Settings, describe_value
from hilsim.errors import ConfigError

log = logging.getLogger(__name__)

_KEYS = ("listen", "password", "password_file", "id_tags")
_LISTEN_EXPECTED = (
    "expected HOST:PORT such as '127.0.0.1:8080' or '0.0.0.0:8080' (every address), "
    "'[::1]:8080', or a port number (then on 127.0.0.1 only)"
)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
_ID_TAG_MAX_LENGTH = 20  # OCPP 1.6 IdToken is CiString20
LOOPBACK = "127.0.0.1"
DEMO_PORT = 8080


@dataclass(frozen=True, slots=True)
class WebSettings:
    """What the web server needs; `host` None means the page is off."""

    source: str = EMBEDDED_SOURCE
    host: str | None = None
    port: int = 8080
    password: str | None = field(default=None, repr=False)  # never in a log line or a repr
    id_tags: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.host is not None

    @property
    def buttons(self) -> bool:
        """Buttons exist only with a password: without one the page is a read-only view."""
        return self.password is not None


def load_web_settings(settings: Settings) -> WebSettings:
    """Parse `settings.raw["web"]`; a wrong value is a ConfigError naming the file and key."""
    source = settings.source
    table = settings.raw.get("web", {})
    if not isinstance(table, Mapping):
        raise ConfigError(source, "web", f"expected a [web] table, got {describe_value(table)}")
    for key in table:
        if key not in _KEYS:
            raise ConfigError(
                source, f"web.{key}", f"unknown key; known keys are: {', '.join(_KEYS)}"
            )
    host, port = (None, 8080) if "listen" not in table else _listen(source, table["listen"])
    return WebSettings(
        source=source,
        host=host,
        port=port,
        password=_password(source, table, _base_dir(source)),
        id_tags=_id_tags(source, table, settings.csms.id_tags),
    )


def with_web(settings: Settings, listen: str, **web: Any) -> Settings:
    """`settings` with its `[web]` table replaced (how `hilsim demo` turns the page on)."""
    table = {**settings.raw.get("web", {}), "listen": listen, **web}
    raw = MappingProxyType({**settings.raw, "web": MappingProxyType(table)})
    return replace(settings, raw=raw)


def demo_listen(host: str = LOOPBACK, port: int = DEMO_PORT) -> str:
    """`hilsim demo`'s address: the usual port, so an open tab follows run after run, or any
    free one when something else holds it (the demo must not fail for a busy port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            probe.bind((host, port))
        except OSError:
            return f"{host}:0"
    return f"{host}:{port}"


def _base_dir(source: str) -> Path:
    """Relative paths resolve against the config file's directory, as [storage] paths do."""
    if source == EMBEDDED_SOURCE:
        return Path.cwd()
    return Path(source).absolute().parent


def _listen(source: str, value: object) -> tuple[str, int]:
    key = "web.listen"
    if isinstance(value, int) and not isinstance(value, bool):
        return LOOPBACK, _port(source, str(value), value)
    if not isinstance(value, str):
        raise ConfigError(source, key, f"{_LISTEN_EXPECTED}, got {describe_value(value)}")
    text = value.strip()
    if text.isdigit():
        return LOOPBACK, _port(source, value, int(text))
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ConfigError(source, key, f"{_LISTEN_EXPECTED}, got {value!r}")
        try:
            if ipaddress.ip_address(host).version != 6:
                raise ValueError(host)
        except ValueError:
            raise ConfigError(
                source, key, f"expected an IPv6 address inside [ ], got {value!r}"
            ) from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ConfigError(source, key, f"{_LISTEN_EXPECTED}, got {value!r}")
        if ":" in host:
            raise ConfigError(
                source, key, f"expected an IPv6 address in brackets ('[::1]:8080'), got {value!r}"
            )
        if not _is_ip(host) and not _HOSTNAME.match(host):
            raise ConfigError(
                source, key, f"expected an IP address or a host name before ':', got {value!r}"
            )
    if not port_text.isdigit():
        raise ConfigError(source, key, f"{_LISTEN_EXPECTED}, got {value!r}")
    return host, _port(source, value, int(port_text))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _port(source: str, shown: str, port: int) -> int:
    if not 0 <= port <= 65535:
        raise ConfigError(
            source,
            "web.listen",
            f"expected a port from 1 to 65535 (0: any free port), got {port} in {shown!r}",
        )
    return port


def _password(source: str, table: Mapping[str, Any], base_dir: Path) -> str | None:
    if "password" in table and "password_file" in table:
        raise ConfigError(
            source, "web.password_file", "expected either password or password_file, not both"
        )
    if "password" in table:
        value = table["password"]
        if not isinstance(value, str) or not value:
            shown = "an empty string" if value == "" else describe_value(value)
            raise ConfigError(source, "web.password", f"expected a non-empty string, got {shown}")
        return value
    if "password_file" not in table:
        return None
    value = table["password_file"]
    key = "web.password_file"
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(source, key, f"expected the path of a file, got {describe_value(value)}")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(
            source, key, f"{path}: file not found; expected a file holding the password"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(
            source, key, f"{path}: cannot read ({reason}); expected a file holding the password"
        ) from None
    password = text.rstrip("\r\n")  # the newline an editor or `echo` adds is not the password
    if not password:
        raise ConfigError(source, key, f"{path}: empty; expected a file holding the password")
    if os.name == "posix" and mode & stat.S_IROTH:
        log.warning("%s: the web password file is readable by every user (chmod 600 it)", path)
    return password


def _id_tags(source: str, table: Mapping[str, Any], default: tuple[str, ...]) -> tuple[str, ...]:
    """The tags the page offers in its list; any other can be typed."""
    if "id_tags" not in table:
        return tuple(default)
    value = table["id_tags"]
    if not isinstance(value, list | tuple):
        raise ConfigError(
            source, "web.id_tags", f"expected an array of strings, got {describe_value(value)}"
        )
    for n, tag in enumerate(value):
        if not isinstance(tag, str) or not tag or len(tag) > _ID_TAG_MAX_LENGTH:
            raise ConfigError(
                source,
                f"web.id_tags[{n}]",
                f"expected a non-empty string of at most {_ID_TAG_MAX_LENGTH} characters "
                f"(OCPP 1.6 IdToken), got {describe_value(tag)}",
            )
    return tuple(dict.fromkeys(value))
