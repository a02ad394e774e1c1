"""The OCPP configuration keys as data.

Each key is described once, here, so GetConfiguration, ChangeConfiguration, persistence and the
control socket all agree on names, types, ranges and text formatting. The values live in memory
(`ConfigurationKeys`); the caller persists them through `hilsim.store`, which keeps this module
free of I/O and trivially testable.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

logger = logging.getLogger(__name__)

Value = int | bool | float
Listener = Callable[["KeySpec", Value], None]

# Strict on purpose: Python's int()/float() also accept "1_000", " 7 ", "nan" and non-ASCII
# digits, none of which a CSMS should be able to slip into a timer.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


@dataclass(frozen=True, slots=True)
class KeySpec:
    """Name, type, default and range of one key; the single source of truth for its text form."""

    name: str
    kind: type  # int, bool or float
    default: Value
    minimum: float | None = None
    maximum: float | None = None
    readonly: bool = False
    aliases: tuple[str, ...] = ()
    description: str = ""

    def parse(self, text: str) -> Value:
        """Turn the text of a ChangeConfiguration into a value, or say why it cannot be one.

        Raises ValueError with a reason fit for a log line.
        """
        if self.kind is bool:
            lowered = text.lower()
            if lowered not in ("true", "false"):
                raise ValueError(f"{self.name}: expected 'true' or 'false', got {text!r}")
            return lowered == "true"
        if self.kind is int:
            if not _INTEGER.fullmatch(text):
                raise ValueError(f"{self.name}: expected a decimal integer, got {text!r}")
            return self.check(int(text))
        if self.kind is float:
            if not _DECIMAL.fullmatch(text):
                raise ValueError(f"{self.name}: expected a decimal number, got {text!r}")
            return self.check(float(text))
        raise TypeError(f"{self.name}: unsupported kind {self.kind!r}")

    def check(self, value: object) -> Value:
        """Validate an already-typed value (from the TOML file or code) against kind and range.

        Returns it converted to `kind` (an int is accepted for a float key). Raises ValueError.
        """
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{self.name}: expected a boolean, got {value!r}")
            return value
        # bool is an int subclass; True is never a sensible interval or voltage.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{self.name}: expected {self._kind_name()}, got {value!r}")
        if self.kind is int:
            if not isinstance(value, int):
                raise ValueError(f"{self.name}: expected an integer, got {value!r}")
            number: int | float = value
        else:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(f"{self.name}: expected a finite number, got {value!r}")
        low_ok = self.minimum is None or number >= self.minimum
        high_ok = self.maximum is None or number <= self.maximum
        if not (low_ok and high_ok):
            raise ValueError(
                f"{self.name}: expected {self._kind_name()} {self._range_text()}, got {value!r}"
            )
        return number

    def format(self, value: Value) -> str:
        """The text form used on the wire and in the database, so both round-trip through parse."""
        if self.kind is bool:
            return "true" if value else "false"
        if self.kind is float:
            # repr is the shortest text that round-trips: 230.0 -> "230.0", 0.1 -> "0.1".
            return repr(float(value))
        return str(int(value))

    def _kind_name(self) -> str:
        return {bool: "a boolean", int: "an integer", float: "a number"}.get(self.kind, "a value")

    def _range_text(self) -> str:
        def show(bound: float) -> str:
            return self.format(bound) if self.kind is float else str(int(bound))

        if self.minimum is not None and self.maximum is not None:
            return f"from {show(self.minimum)} to {show(self.maximum)}"
        if self.minimum is not None:
            return f"of at least {show(self.minimum)}"
        if self.maximum is not None:
            return f"of at most {show(self.maximum)}"
        return ""


SPECS: tuple[KeySpec, ...] = (
    KeySpec(
        "HeartbeatInterval",
        int,
        120,
        1,
        86400,
        description="Seconds between Heartbeat messages.",
    ),
    KeySpec(
        "ConnectionTimeOut",
        int,
        60,
        1,
        3600,
        description="Connection timeout in seconds.",
    ),
    KeySpec(
        # The OCPP 1.6 standard name; our spec spells it MeterValuesSampleInterval, and CSMSs in
        # the field use both, so both must reach the same setting.
        "MeterValueSampleInterval",
        int,
        30,
        0,
        86400,
        aliases=("MeterValuesSampleInterval",),
        description="Seconds between MeterValues while charging; 0 disables sampling.",
    ),
    KeySpec(
        "ClockAlignedDataInterval",
        int,
        0,
        0,
        86400,
        description="Seconds between clock-aligned meter data; 0 disables (config only).",
    ),
    KeySpec(
        "AuthorizeRemoteTxRequests",
        bool,
        False,
        description="Whether RemoteStartTransaction is authorized before starting.",
    ),
    KeySpec(
        "LocalAuthListEnabled",
        bool,
        False,
        description="Local authorization list enabled flag.",
    ),
    KeySpec(
        "OCPPAuthorizationEnabled",
        bool,
        True,
        description="Send Authorize before StartTransaction and only start on Accepted.",
    ),
    KeySpec(
        "voltage_V",
        float,
        230.0,
        1,
        1000,
        description="EVSE voltage used to convert between current and power.",
    ),
    # -- beyond the spec's eight: offline operation and dead-link detection (OCPP 1.6 Core) ----
    KeySpec(
        "TransactionMessageAttempts",
        int,
        3,
        1,
        100,
        description="How often a transaction message answered with a CALLERROR is tried.",
    ),
    KeySpec(
        "TransactionMessageRetryInterval",
        int,
        60,
        0,
        86400,
        description="Seconds before retry n of a refused transaction message, times n.",
    ),
    KeySpec(
        "LocalAuthorizeOffline",
        bool,
        True,
        description="While offline, start for idTags the authorization cache accepts.",
    ),
    KeySpec(
        "AllowOfflineTxForUnknownId",
        bool,
        False,
        description="While offline, also start for idTags the cache does not know.",
    ),
    KeySpec(
        "LocalPreAuthorize",
        bool,
        False,
        description="While online, start at once for idTags the cache accepts.",
    ),
    KeySpec(
        "AuthorizationCacheEnabled",
        bool,
        True,
        description="Remember the IdTagInfo of every idTag the CSMS answers for.",
    ),
    KeySpec(
        "WebSocketPingInterval",
        int,
        30,
        0,
        86400,
        description="Seconds between WebSocket pings (a missed pong drops the link); 0 is off.",
    ),
)

#: The eight keys of the project's spec, in its order; the rest extend it.
SPEC_KEY_NAMES: tuple[str, ...] = tuple(spec.name for spec in SPECS[:8])


def _index(specs: Sequence[KeySpec]) -> Mapping[str, KeySpec]:
    """Name-and-alias lookup table; read-only so it can be shared without becoming global state."""
    table: dict[str, KeySpec] = {}
    for spec in specs:
        for name in (spec.name, *spec.aliases):
            if name in table:
                raise ValueError(f"configuration key name {name!r} is defined twice")
            table[name] = spec
    return MappingProxyType(table)


_BY_NAME = _index(SPECS)


def lookup(name: str) -> KeySpec | None:
    """Find a key by its name or an alias.

    Exact case: OCPP's CiString would permit folding, but exact matching keeps the alias pair
    unambiguous and makes a CSMS's misspelling visible as NotSupported rather than half-working.
    """
    return _BY_NAME.get(name)


class ChangeStatus(StrEnum):
    """ChangeConfiguration.conf status values, spelled as on the wire."""

    accepted = "Accepted"
    rejected = "Rejected"
    not_supported = "NotSupported"
    reboot_required = "RebootRequired"


class ConfigurationKeys:
    """The live values, in memory; persisted by the caller through Store.

    Timers (heartbeat, metering) subscribe here instead of polling, so a ChangeConfiguration takes
    effect immediately without the OCPP handler knowing who cares about which key.
    """

    def __init__(
        self,
        values: Mapping[str, Value] | None = None,
        *,
        specs: Sequence[KeySpec] = SPECS,
    ) -> None:
        self._specs = tuple(specs)
        self._by_name = _BY_NAME if self._specs == SPECS else _index(self._specs)
        self._values: dict[str, Value] = {spec.name: spec.default for spec in self._specs}
        self._listeners: list[Listener] = []
        for name, value in (values or {}).items():
            spec = self._spec(name)
            self._values[spec.name] = spec.check(value)

    @property
    def specs(self) -> tuple[KeySpec, ...]:
        """The keys this instance knows, in reporting order."""
        return self._specs

    def spec(self, name: str) -> KeySpec | None:
        """Like `lookup`, but for this instance's keys."""
        return self._by_name.get(name)

    def get(self, name: str) -> Value:
        """Current value of a key, by name or alias; KeyError for an unknown key."""
        return self._values[self._spec(name).name]

    def change(self, name: str, text: str) -> tuple[ChangeStatus, KeySpec | None, Value | None]:
        """Apply a ChangeConfiguration in memory.

        Returns the status for the CSMS plus the canonical spec and parsed value, so the caller
        can persist exactly what was applied under the canonical name.
        """
        spec = self._by_name.get(name)
        if spec is None:
            logger.info("ChangeConfiguration %s: unknown key, NotSupported", name)
            return ChangeStatus.not_supported, None, None
        if spec.readonly:
            logger.info("ChangeConfiguration %s: read-only, Rejected", name)
            return ChangeStatus.rejected, spec, None
        try:
            value = spec.parse(text)
        except ValueError as exc:
            logger.info("ChangeConfiguration rejected: %s", exc)
            return ChangeStatus.rejected, spec, None
        self._values[spec.name] = value
        logger.info("ChangeConfiguration %s = %s", spec.name, spec.format(value))
        self._notify(spec, value)
        return ChangeStatus.accepted, spec, value

    def report(self, names: Sequence[str] | None) -> tuple[list[tuple[KeySpec, str]], list[str]]:
        """Answer a GetConfiguration: (known keys with formatted values, unknown names as given).

        Known keys come in request order, deduplicated by canonical name so asking for a key and
        its alias does not list the setting twice; no names means every key.
        """
        if not names:
            return [(spec, spec.format(self._values[spec.name])) for spec in self._specs], []
        known: list[tuple[KeySpec, str]] = []
        unknown: list[str] = []
        seen: set[str] = set()
        for name in names:
            spec = self._by_name.get(name)
            if spec is None:
                unknown.append(name)
            elif spec.name not in seen:
                seen.add(spec.name)
                known.append((spec, spec.format(self._values[spec.name])))
        return known, unknown

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(spec, value)` after every accepted change; returns an unsubscribe."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            # Idempotent, so cleanup paths can call it without tracking whether they already did.
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def as_text(self) -> dict[str, str]:
        """Canonical name -> formatted value, the form the store persists."""
        return {spec.name: spec.format(self._values[spec.name]) for spec in self._specs}

    def _spec(self, name: str) -> KeySpec:
        spec = self._by_name.get(name)
        if spec is None:
            raise KeyError(name)
        return spec

    def _notify(self, spec: KeySpec, value: Value) -> None:
        # A broken listener must not turn an applied change into an error reply to the CSMS, nor
        # keep the remaining listeners from hearing about it.
        for listener in tuple(self._listeners):
            try:
                listener(spec, value)
            except Exception:
                logger.exception("listener for %s failed", spec.name)
