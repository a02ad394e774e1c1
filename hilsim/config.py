"""TOML configuration file to frozen settings.

The file is validated completely at start-up, so a typo on the bench becomes one clear line naming
the file, the key and what was expected, instead of a surprise minutes later when the charge point
first connects or meters. Later issues add their own tables; those are let through untouched and
read from `Settings.raw`, so this module does not have to know their shape.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from hilsim import __version__
from hilsim.config_reader import TableReader, describe_value
from hilsim.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path("/etc/hilsim/hilsim.toml")
DEFAULT_DATABASE = Path("/var/lib/hilsim/hilsim.db")
DEFAULT_SOCKET = Path("/run/hilsim/control.sock")
EMBEDDED_SOURCE = "<embedded defaults>"

GPIO_BACKENDS = ("auto", "mock", "lgpio", "rpigpio", "native")

# Tables that later issues parse themselves; accepted here so adding them is not a config error.
_FOREIGN_TABLES = ("security", "web", "meter", "log")  # log: hilsim.daemon.logs
_CONNECTOR_SUBTABLES = ("gpio", "meter")
_TOP_LEVEL = ("charge_point", "connector", "storage", "control", "gpio", "csms", *_FOREIGN_TABLES)

_CHARGE_POINT_KEYS = (
    "id",
    "csms_url",
    "vendor",
    "model",
    "firmware_version",
    "serial_number",
    "charge_box_serial_number",
    "meter_serial_number",
    "meter_type",
    "ocpp_version",
)
#: The OCPP versions the charge point speaks; the first is the default.
OCPP_VERSIONS = ("1.6", "2.0.1")
# Field lengths from the OCPP 1.6 BootNotification schema: longer values are rejected by the CSMS
# at boot, which is far harder to diagnose than a config error.
_CHARGE_POINT_MAX_LENGTH = {
    "vendor": 20,
    "model": 20,
    "firmware_version": 50,
    "serial_number": 25,
    "charge_box_serial_number": 25,
    "meter_serial_number": 25,
    "meter_type": 25,
}
_CONNECTOR_KEYS = ("id", "voltage_V", "max_power_W", "phases", "unlock", *_CONNECTOR_SUBTABLES)
#: How UnlockConnector ends on this connector: the answer a real charger's lock would give.
UNLOCK_OUTCOMES = ("unlocked", "failed", "not_supported")
_MAX_VOLTAGE_V = 1000.0
_MAX_POWER_W = 400_000.0
_ID_TAG_MAX_LENGTH = 20  # OCPP 1.6 IdToken is CiString20


@dataclass(frozen=True, slots=True)
class ChargePointSettings:
    """Identity of the simulated charge point, as sent in BootNotification."""

    id: str
    csms_url: str
    vendor: str = "hilsim"
    model: str = "bench"
    firmware_version: str = __version__
    serial_number: str | None = None
    charge_box_serial_number: str | None = None
    meter_serial_number: str | None = None
    meter_type: str | None = None
    #: "1.6" (OCPP 1.6J) or "2.0.1" (OCPP 2.0.1, package hilsim.ocpp201, loaded only then)
    ocpp_version: str = "1.6"

    @property
    def endpoint(self) -> str:
        """The WebSocket URL to dial.

        OCPP-J identifies the charge point by the last path segment, so the id is appended rather
        than configured twice; it is percent-encoded because ids with spaces or '#' occur in the
        wild and would otherwise silently change the URL's meaning.
        """
        parts = urlsplit(self.csms_url)
        path = f"{parts.path.rstrip('/')}/{quote(self.id, safe='')}"
        return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


@dataclass(frozen=True, slots=True)
class ConnectorSettings:
    """Electrical limits of one connector; charging profiles are clamped to these."""

    id: int
    voltage_V: float = 230.0  # line to neutral
    max_power_W: float = 11000.0
    #: Phases wired to the connector (1 to 3): a limit in A is per phase, so W = A x V x phases,
    #: and the current in MeterValues is per phase too.
    phases: int = 1
    unlock: str = "unlocked"  # one of UNLOCK_OUTCOMES


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Where state survives a power cut."""

    database: Path


@dataclass(frozen=True, slots=True)
class ControlSettings:
    """Where `hilsim ctl` finds the running service."""

    socket: Path


@dataclass(frozen=True, slots=True)
class GpioSettings:
    """Which GPIO library drives the panel; 'mock' lets everything run off a Pi."""

    backend: str = "mock"


@dataclass(frozen=True, slots=True)
class CsmsSettings:
    """The built-in CSMS (`hilsim csms`), so a bench works without an external central system."""

    host: str = "127.0.0.1"
    port: int = 9000
    id_tags: tuple[str, ...] = ("04A2B3C4", "DEADBEEF")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service needs, validated once so no other module re-checks it."""

    source: str
    charge_point: ChargePointSettings
    connectors: tuple[ConnectorSettings, ...]
    storage: StorageSettings
    control: ControlSettings
    gpio: GpioSettings
    csms: CsmsSettings
    # Read-only view of the parsed TOML, for tables owned by later issues. Excluded from hashing
    # because mappings are unhashable, and settings should stay usable as dict keys.
    raw: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def connector(self, connector_id: int) -> ConnectorSettings:
        """Look a connector up by its OCPP id (ids are 1..n, so this never guesses by position)."""
        for connector in self.connectors:
            if connector.id == connector_id:
                return connector
        known = ", ".join(str(c.id) for c in self.connectors)
        raise KeyError(f"no connector {connector_id}; configured connectors are {known}")


def load_settings(path: str | Path) -> Settings:
    """Read and validate a configuration file.

    Relative storage/control paths resolve against the file's directory, so a config next to its
    database works no matter which directory the service was started from.
    """
    path = Path(path)
    source = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            source, None, "file not found; expected a TOML configuration file"
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            source, None, "cannot read: is a directory; expected a TOML configuration file"
        ) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            source, None, f"cannot read: {reason}; expected a readable TOML configuration file"
        ) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            source, None, f"expected UTF-8 text, got an invalid byte at offset {exc.start}"
        ) from None
    return parse_settings(text, source, base_dir=path.absolute().parent)


def parse_settings(text: str, source: str, *, base_dir: Path | None = None) -> Settings:
    """Validate configuration text; `source` only labels errors.

    `base_dir` anchors relative paths; without it they resolve against the current directory.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib (3.11) only reports the position inside the message: "... (at line 3, column 5)".
        raise ConfigError(source, None, f"expected valid TOML: {exc}") from None
    return _Parser(source, base_dir if base_dir is not None else Path.cwd()).settings(document)


def embedded_defaults(base_dir: Path | None = None) -> Settings:
    """The demo configuration shipped inside the package.

    It lets `hilsim demo` run straight from a checkout with no file in /etc. Its database and
    socket are relative names, resolved against `base_dir` (default: the current directory),
    because a fixed absolute path in package data would collide between users and need root.
    """
    from importlib import resources  # only here: `hilsim run` with a file never needs it

    text = resources.files("hilsim").joinpath("defaults.toml").read_text(encoding="utf-8")
    return parse_settings(text, EMBEDDED_SOURCE, base_dir=base_dir)


def _freeze(value: Any) -> Any:
    """Deep read-only copy, so later issues reading `raw` cannot change what others see."""
    if isinstance(value, dict):
        return MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(item) for item in value)
    return value


class _Parser(TableReader):
    """The tables this module owns, read into Settings; the readers come from TableReader."""

    def settings(self, document: dict[str, Any]) -> Settings:
        self.check_keys(None, document, _TOP_LEVEL, what="table")
        if "charge_point" not in document:
            raise self.error("charge_point", "missing table; expected a [charge_point] table")
        storage = self.table(document, "storage")
        control = self.table(document, "control")
        return Settings(
            source=self.source,
            charge_point=self.charge_point(self.table(document, "charge_point")),
            connectors=self.connectors(document),
            storage=StorageSettings(
                database=self.path(storage, "storage", "database", DEFAULT_DATABASE)
            ),
            control=ControlSettings(socket=self.path(control, "control", "socket", DEFAULT_SOCKET)),
            gpio=self.gpio(self.table(document, "gpio")),
            csms=self.csms(self.table(document, "csms")),
            raw=_freeze(document),
        )

    # -- tables --------------------------------------------------------------------------------

    def charge_point(self, table: dict[str, Any]) -> ChargePointSettings:
        prefix = "charge_point"
        self.check_keys(prefix, table, _CHARGE_POINT_KEYS)
        cp_id = self.required_string(table, prefix, "id")
        if "/" in cp_id:
            raise self.error(
                "charge_point.id",
                f"expected an id without '/' (it becomes one URL path segment), got {cp_id!r}",
            )
        url = self.required_string(table, prefix, "csms_url")
        self.check_url(url)
        optional: dict[str, str] = {}
        for key, max_length in _CHARGE_POINT_MAX_LENGTH.items():
            value = self.optional_string(table, prefix, key, max_length=max_length)
            if value is not None:
                optional[key] = value
        version = self.choice(table, prefix, "ocpp_version", OCPP_VERSIONS)
        return ChargePointSettings(id=cp_id, csms_url=url, ocpp_version=version, **optional)

    def check_url(self, url: str) -> None:
        expected = "expected a ws:// or wss:// URL such as 'ws://127.0.0.1:9000'"
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a malformed port
        except ValueError:
            raise self.error("charge_point.csms_url", f"{expected}, got {url!r}") from None
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise self.error("charge_point.csms_url", f"{expected}, got {url!r}")
        if parts.fragment:
            # RFC 6455 forbids fragments in WebSocket URIs.
            raise self.error(
                "charge_point.csms_url", f"{expected} without a '#' fragment, got {url!r}"
            )

    def connectors(self, document: dict[str, Any]) -> tuple[ConnectorSettings, ...]:
        tables = document.get("connector")
        if tables is None:
            raise self.error(
                "connector", "missing; expected at least one [[connector]] table with id = 1"
            )
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise self.error(
                "connector",
                f"expected an array of [[connector]] tables, got {describe_value(tables)}",
            )
        if not tables:
            raise self.error("connector", "expected at least one [[connector]] table with id = 1")
        # Errors are labelled by position in the file, counting from 1 like the ids themselves.
        connectors: list[ConnectorSettings] = []
        position_of: dict[int, int] = {}
        for n, table in enumerate(tables, 1):
            prefix = f"connector[{n}]"
            connector = self.connector(table, prefix)
            if connector.id in position_of:
                raise self.error(
                    f"{prefix}.id",
                    f"expected a unique id, got {connector.id} which connector"
                    f"[{position_of[connector.id]}] already has",
                )
            if connector.id > len(tables):
                raise self.error(
                    f"{prefix}.id",
                    f"expected an id from 1 to {len(tables)} (OCPP numbers connectors 1..n "
                    f"without gaps), got {connector.id}",
                )
            position_of[connector.id] = n
            connectors.append(connector)
        return tuple(sorted(connectors, key=lambda c: c.id))

    def connector(self, table: dict[str, Any], prefix: str) -> ConnectorSettings:
        self.check_keys(prefix, table, _CONNECTOR_KEYS)
        if "id" not in table:
            raise self.error(f"{prefix}.id", "missing key; expected an integer from 1")
        connector_id = table["id"]
        if not isinstance(connector_id, int) or isinstance(connector_id, bool) or connector_id < 1:
            raise self.error(
                f"{prefix}.id", f"expected an integer from 1, got {describe_value(connector_id)}"
            )
        return ConnectorSettings(
            id=connector_id,
            voltage_V=self.number(table, prefix, "voltage_V", 230.0, _MAX_VOLTAGE_V),
            max_power_W=self.number(table, prefix, "max_power_W", 11000.0, _MAX_POWER_W),
            phases=self.integer(table, prefix, "phases", 1, 1, 3),
            unlock=self.choice(table, prefix, "unlock", UNLOCK_OUTCOMES),
        )

    def gpio(self, table: dict[str, Any]) -> GpioSettings:
        # Only `backend` is ours; the panel's pin keys live in the same table and are parsed by
        # the GPIO module from `raw`.
        backend = self.optional_string(table, "gpio", "backend") or GpioSettings().backend
        if backend not in GPIO_BACKENDS:
            raise self.error(
                "gpio.backend", f"expected one of {', '.join(GPIO_BACKENDS)}, got {backend!r}"
            )
        return GpioSettings(backend=backend)

    def csms(self, table: dict[str, Any]) -> CsmsSettings:
        prefix = "csms"
        self.check_keys(prefix, table, ("host", "port", "id_tags"))
        defaults = CsmsSettings()
        host = self.optional_string(table, prefix, "host") or defaults.host
        # Port 0 lets the OS choose, which tests use to avoid clashing with a running service.
        port = self.integer(table, prefix, "port", defaults.port, 0, 65535)
        id_tags = defaults.id_tags
        if "id_tags" in table:
            value = table["id_tags"]
            if not isinstance(value, list):
                raise self.error(
                    "csms.id_tags", f"expected an array of strings, got {describe_value(value)}"
                )
            for n, tag in enumerate(value):
                if not isinstance(tag, str) or not tag or len(tag) > _ID_TAG_MAX_LENGTH:
                    raise self.error(
                        f"csms.id_tags[{n}]",
                        f"expected a non-empty string of at most {_ID_TAG_MAX_LENGTH} characters "
                        f"(OCPP 1.6 IdToken), got {describe_value(tag)}",
                    )
            id_tags = tuple(value)
        return CsmsSettings(host=host, port=port, id_tags=id_tags)
