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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING

from hilsim.errors import HilsimError

if TYPE_CHECKING:
    from hilsim.config import Settings

logger = logging.getLogger(__name__)

Value = int | bool | float | str
Listener = Callable[["KeySpec", Value], None]
Guard = Callable[[Value], "str | None"]
#: Persists an accepted value (committed, durable) before it is applied; raises if it cannot.
Saver = Callable[["KeySpec", Value], Awaitable[None]]

# Strict on purpose: Python's int()/float() also accept "1_000", " 7 ", "nan" and non-ASCII
# digits, none of which a CSMS should be able to slip into a timer.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
#: ChangeConfiguration.req's value is a CiString500Type.
_MAX_TEXT_LENGTH = 500


@dataclass(frozen=True, slots=True)
class KeySpec:
    """Name, type, default and range of one key; the single source of truth for its text form."""

    name: str
    kind: type  # int, bool, float or str
    default: Value
    minimum: float | None = None
    maximum: float | None = None
    readonly: bool = False
    aliases: tuple[str, ...] = ()
    description: str = ""
    #: A str key with `choices` or `member` is an OCPP comma-separated list (CSL): each member
    #: must be one of `choices` or match the regex `member`, none twice, at most `max_items`.
    choices: tuple[str, ...] = ()
    member: str | None = None
    max_items: int | None = None
    #: A str key that is not a list must match the regex `pattern` (said as `pattern_text`).
    pattern: str | None = None
    pattern_text: str = ""
    #: A secret (AuthorizationKey): never reported, logged or stored with the other keys.
    writeonly: bool = False

    @property
    def is_list(self) -> bool:
        return bool(self.choices) or self.member is not None

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
        if self.kind is str:
            return self.check(text)
        raise TypeError(f"{self.name}: unsupported kind {self.kind!r}")

    def check(self, value: object) -> Value:
        """Validate an already-typed value (from the TOML file or code) against kind and range.

        Returns it converted to `kind` (an int is accepted for a float key). Raises ValueError.
        """
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{self.name}: expected a boolean, got {value!r}")
            return value
        if self.kind is str:
            return self._check_text(value)
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

    def _check_text(self, value: object) -> str:
        """A text key's value; a list is returned normalised ("a, b" -> "a,b")."""
        if not isinstance(value, str):
            raise ValueError(f"{self.name}: expected text, got {value!r}")
        if len(value) > _MAX_TEXT_LENGTH:
            raise ValueError(
                f"{self.name}: expected at most {_MAX_TEXT_LENGTH} characters, got {len(value)}"
            )
        if not self.is_list:
            if self.pattern is not None and re.fullmatch(self.pattern, value) is None:
                # Never the value itself: it may be a secret.
                raise ValueError(f"{self.name}: expected {self.pattern_text or self.pattern}")
            return value
        # An empty value is the empty list (e.g. no measurands in StopTransaction).
        items = [item.strip() for item in value.split(",")] if value.strip() else []
        if any(not item for item in items):
            raise ValueError(
                f"{self.name}: expected a comma-separated list without empty members, "
                f"got {value!r}"
            )
        for item in items:
            if not self._member_ok(item):
                raise ValueError(
                    f"{self.name}: expected members {self._members_text()}, got {item!r}"
                )
        if len(set(items)) != len(items):
            raise ValueError(f"{self.name}: expected each member once, got {value!r}")
        if self.max_items is not None and len(items) > self.max_items:
            raise ValueError(
                f"{self.name}: expected at most {self.max_items} members, got {len(items)}"
            )
        return ",".join(items)

    def _member_ok(self, item: str) -> bool:
        if self.choices:
            return item in self.choices
        return self.member is not None and re.fullmatch(self.member, item) is not None

    def _members_text(self) -> str:
        if self.choices:
            return "from " + ", ".join(self.choices)
        return f"matching {self.member}"

    def items(self, value: Value) -> tuple[str, ...]:
        """The members of a list key's value."""
        text = str(value)
        return tuple(text.split(",")) if text else ()

    def format(self, value: Value) -> str:
        """The text form used on the wire and in the database, so both round-trip through parse."""
        if self.kind is str:
            return str(value)
        if self.kind is bool:
            return "true" if value else "false"
        if self.kind is float:
            # repr is the shortest text that round-trips: 230.0 -> "230.0", 0.1 -> "0.1".
            return repr(float(value))
        return str(int(value))

    def shown(self, value: Value) -> str:
        """The value as a log line may show it."""
        return "(write-only, not shown)" if self.writeonly else self.format(value)

    def _kind_name(self) -> str:
        names = {bool: "a boolean", int: "an integer", float: "a number", str: "text"}
        return names.get(self.kind, "a value")

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


#: OCPP 1.6 feature profiles, as SupportedFeatureProfiles spells them.
FEATURE_PROFILES = (
    "Core",
    "FirmwareManagement",
    "LocalAuthListManagement",
    "Reservation",
    "SmartCharging",
    "RemoteTrigger",
)
#: The measurands hilsim can put in a MeterValue (Voltage and Frequency only from a real meter).
MEASURANDS = (
    "Energy.Active.Import.Register",
    "Power.Active.Import",
    "Current.Import",
    "Voltage",
    "Frequency",
    "SoC",
    "Power.Offered",
    "Current.Offered",
)
SAMPLED_DEFAULT = MEASURANDS[:6]
LOCAL_LIST_MAX_LENGTH = 1000
SEND_LOCAL_LIST_MAX_LENGTH = 250

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
    # -- the rest of the OCPP 1.6 Core profile (section 9.1), then LocalAuthListManagement (9.2)
    # and Reservation (9.3). Read-only values that depend on the installation are seeded by the
    # service from the settings (`installation_seed`).
    KeySpec(
        "NumberOfConnectors",
        int,
        1,
        1,
        100,
        readonly=True,
        description="Physical connectors of this charge point (from the [[connector]] tables).",
    ),
    KeySpec(
        "SupportedFeatureProfiles",
        str,
        ",".join(FEATURE_PROFILES),
        readonly=True,
        choices=FEATURE_PROFILES,
        description="The OCPP 1.6 feature profiles this charge point implements.",
    ),
    KeySpec(
        "SupportedFeatureProfilesMaxLength",
        int,
        len(FEATURE_PROFILES),
        0,
        100,
        readonly=True,
        description="Most members SupportedFeatureProfiles can hold.",
    ),
    KeySpec(
        "GetConfigurationMaxKeys",
        int,
        100,
        1,
        1000,
        readonly=True,
        description="Most keys one GetConfiguration.req may ask for.",
    ),
    KeySpec(
        "MeterValuesSampledData",
        str,
        ",".join(SAMPLED_DEFAULT),
        choices=MEASURANDS,
        max_items=len(MEASURANDS),
        description="Measurands in the periodic (and triggered) MeterValues while charging.",
    ),
    KeySpec(
        "MeterValuesSampledDataMaxLength",
        int,
        len(MEASURANDS),
        0,
        100,
        readonly=True,
        description="Most measurands MeterValuesSampledData can hold.",
    ),
    KeySpec(
        "MeterValuesAlignedData",
        str,
        "Energy.Active.Import.Register",
        choices=MEASURANDS,
        max_items=len(MEASURANDS),
        description="Measurands of the clock-aligned MeterValues (ClockAlignedDataInterval).",
    ),
    KeySpec(
        "MeterValuesAlignedDataMaxLength",
        int,
        len(MEASURANDS),
        0,
        100,
        readonly=True,
        description="Most measurands MeterValuesAlignedData can hold.",
    ),
    KeySpec(
        "StopTxnSampledData",
        str,
        "",
        choices=MEASURANDS,
        max_items=len(MEASURANDS),
        description="Sampled measurands in StopTransaction's transactionData.",
    ),
    KeySpec(
        "StopTxnSampledDataMaxLength",
        int,
        len(MEASURANDS),
        0,
        100,
        readonly=True,
        description="Most measurands StopTxnSampledData can hold.",
    ),
    KeySpec(
        "StopTxnAlignedData",
        str,
        "",
        choices=MEASURANDS,
        max_items=len(MEASURANDS),
        description="Clock-aligned measurands in StopTransaction's transactionData.",
    ),
    KeySpec(
        "StopTxnAlignedDataMaxLength",
        int,
        len(MEASURANDS),
        0,
        100,
        readonly=True,
        description="Most measurands StopTxnAlignedData can hold.",
    ),
    KeySpec(
        "ConnectorPhaseRotation",
        str,
        "0.Unknown",
        member=r"[0-9]{1,3}\.(?:NotApplicable|Unknown|RST|RTS|SRT|STR|TRS|TSR)",
        max_items=101,
        description="Phase rotation per connector (e.g. 0.RST,1.RST); informational.",
    ),
    KeySpec(
        "ConnectorPhaseRotationMaxLength",
        int,
        101,
        0,
        1000,
        readonly=True,
        description="Most members ConnectorPhaseRotation can hold.",
    ),
    KeySpec(
        "StopTransactionOnEVSideDisconnect",
        bool,
        True,
        description="Stop the transaction when the cable is pulled out of the EV.",
    ),
    KeySpec(
        "StopTransactionOnInvalidId",
        bool,
        True,
        description="Stop a transaction the CSMS answers StartTransaction for with a non-Accepted "
        "idTag; false: keep it, without energy (SuspendedEVSE).",
    ),
    KeySpec(
        # Read-only 0: energy stops the moment the CSMS refuses the idTag of a transaction kept
        # running (StopTransactionOnInvalidId false); hilsim grants no allowance after that.
        "MaxEnergyOnInvalidId",
        int,
        0,
        0,
        0,
        readonly=True,
        description="Wh still delivered after the idTag of a running transaction was refused.",
    ),
    KeySpec(
        "UnlockConnectorOnEVSideDisconnect",
        bool,
        True,
        description="Unlock the charge point side of the cable when it is pulled out of the EV.",
    ),
    KeySpec(
        "MinimumStatusDuration",
        int,
        0,
        0,
        3600,
        description="Seconds a status must last before StatusNotification reports it; 0 is off.",
    ),
    KeySpec(
        "ResetRetries",
        int,
        1,
        0,
        10,
        description="How often a failed reset is tried again.",
    ),
    KeySpec(
        "BlinkRepeat",
        int,
        3,
        0,
        100,
        description="How often the lights blink when they signal something.",
    ),
    KeySpec(
        "LightIntensity",
        int,
        100,
        0,
        100,
        description="Brightness of the lights, in percent.",
    ),
    KeySpec(
        "LocalAuthListMaxLength",
        int,
        LOCAL_LIST_MAX_LENGTH,
        0,
        1_000_000,
        readonly=True,
        description="Most idTags the local authorization list holds.",
    ),
    KeySpec(
        "SendLocalListMaxLength",
        int,
        SEND_LOCAL_LIST_MAX_LENGTH,
        0,
        1_000_000,
        readonly=True,
        description="Most idTags one SendLocalList.req may carry.",
    ),
    KeySpec(
        "ReserveConnectorZeroSupported",
        bool,
        True,
        readonly=True,
        description="ReserveNow may reserve the charge point as a whole (connector 0).",
    ),
    # -- SmartCharging (OCPP 1.6 section 9.4): what hilsim.charging_limits accepts ------------
    KeySpec(
        "ChargeProfileMaxStackLevel",
        int,
        10,
        0,
        1000,
        readonly=True,
        description="Highest stackLevel a SetChargingProfile may use.",
    ),
    KeySpec(
        "ChargingScheduleAllowedChargingRateUnit",
        str,
        "Current,Power",
        readonly=True,
        choices=("Current", "Power"),
        max_items=2,
        description="Rate units a charging schedule may use: Current (A), Power (W).",
    ),
    KeySpec(
        "ChargingScheduleMaxPeriods",
        int,
        24,
        1,
        1000,
        readonly=True,
        description="Most periods one charging schedule may have.",
    ),
    KeySpec(
        "MaxChargingProfilesInstalled",
        int,
        20,
        1,
        1000,
        readonly=True,
        description="Most charging profiles installed at once.",
    ),
    # -- Security whitepaper (OCPP 1.6 ed. 3): hilsim.security --------------------------------
    KeySpec(
        "SecurityProfile",
        int,
        0,
        0,
        3,
        description="0 none, 1 Basic auth over ws, 2 TLS and Basic auth, 3 TLS client "
        "certificate; starts from [security] profile, never goes down by ChangeConfiguration.",
    ),
    KeySpec(
        "AuthorizationKey",
        str,
        "",
        # 16 to 40 bytes as hexadecimal digits (the whitepaper); empty: none set.
        pattern=r"(?:(?:[0-9A-Fa-f]{2}){16,40})?",
        pattern_text="16 to 40 bytes written as 32 to 80 hexadecimal digits",
        writeonly=True,
        description="The HTTP Basic auth password (profiles 1 and 2). Write-only.",
    ),
)

#: The eight keys of the project's spec, in its order; the rest extend it.
SPEC_KEY_NAMES: tuple[str, ...] = tuple(spec.name for spec in SPECS[:8])


def _index(specs: Sequence[KeySpec]) -> Mapping[str, KeySpec]:
    """Name-and-alias lookup table, by case-folded name (a key is a CiString50: case does not
    matter); read-only so it can be shared without becoming global state."""
    table: dict[str, KeySpec] = {}
    for spec in specs:
        for name in (spec.name, *spec.aliases):
            folded = name.casefold()
            if folded in table:
                raise ValueError(f"configuration key name {name!r} is defined twice")
            table[folded] = spec
    return MappingProxyType(table)


_BY_NAME = _index(SPECS)


def lookup(name: str) -> KeySpec | None:
    """Find a key by its name or an alias, whatever its case (OCPP: CiString50Type).

    The answer always uses the canonical spelling (`KeySpec.name`).
    """
    return _BY_NAME.get(name.casefold())


def is_secret_key(name: object) -> bool:
    """Whether a key name, spelt in any case, is a write-only key (AuthorizationKey): what log
    lines and frame views test before they show a value."""
    spec = lookup(name) if isinstance(name, str) else None
    return spec is not None and spec.writeonly


@dataclass(frozen=True, slots=True)
class Change:
    """The outcome of a ChangeConfiguration: the status, and why when it is not Accepted."""

    status: ChangeStatus
    spec: KeySpec | None  # canonical; None for an unknown key
    value: Value | None  # the parsed value, when Accepted
    why: str = ""  # never shows a write-only value

    def answer(self) -> dict[str, object]:
        """The control socket's answer (`hilsim config set`): a refusal says why."""
        status = str(self.status)
        if self.status == ChangeStatus.accepted:
            return {"ok": True, "result": {"status": status}}
        error = f"{status}: {self.why}" if self.why else status
        return {"ok": False, "result": {"status": status}, "error": error}


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
        self._guards: dict[str, list[Guard]] = {}
        self._keepers: dict[str, Callable[[Value], Awaitable[None]]] = {}
        for name, value in (values or {}).items():
            spec = self._spec(name)
            self._values[spec.name] = spec.check(value)

    @property
    def specs(self) -> tuple[KeySpec, ...]:
        """The keys this instance knows, in reporting order."""
        return self._specs

    def spec(self, name: str) -> KeySpec | None:
        """Like `lookup`, but for this instance's keys."""
        return self._by_name.get(name.casefold())

    def get(self, name: str) -> Value:
        """Current value of a key, by name or alias; KeyError for an unknown key."""
        return self._values[self._spec(name).name]

    def load(self, name: str, value: Value) -> None:
        """Set a value from where its owner keeps it (a secret's file): checked, not announced."""
        spec = self._spec(name)
        self._values[spec.name] = spec.check(value)

    def guard(self, name: str, check: Guard) -> None:
        """Let `check(value)` veto changes of a key: it returns why not, or None to allow.

        For rules no range can say (SecurityProfile may not go down, nor up without the
        certificates it needs).
        """
        self._guards.setdefault(self._spec(name).name, []).append(check)

    def keep_with(self, name: str, save: Callable[[Value], Awaitable[None]]) -> None:
        """Let the owner of a key persist it instead of the database (the AuthorizationKey's
        file): `set` calls ``save(value)`` before the value is applied."""
        self._keepers[self._spec(name).name] = save

    def validate(self, name: str, text: str) -> Change:
        """Would a ChangeConfiguration be accepted? Parsing, range, read-only and every guard;
        nothing changes. Logged without a write-only value."""
        spec = self.spec(name)
        if spec is None:
            logger.info("ChangeConfiguration %s: unknown key, NotSupported", name)
            return Change(ChangeStatus.not_supported, None, None, f"unknown key {name}")
        if spec.readonly:
            logger.info("ChangeConfiguration %s: read-only, Rejected", spec.name)
            return Change(ChangeStatus.rejected, spec, None, f"{spec.name} is read-only")
        try:
            value = spec.parse(text)
        except ValueError as exc:
            why = str(exc)
            if spec.writeonly:
                why = why.replace(repr(text), "(not shown)").replace(text, "(not shown)")
            logger.info("ChangeConfiguration rejected: %s", why)
            return Change(ChangeStatus.rejected, spec, None, why)
        for check in self._guards.get(spec.name, ()):
            if (why := check(value)) is not None:
                logger.info("ChangeConfiguration %s rejected: %s", spec.name, why)
                return Change(ChangeStatus.rejected, spec, None, why)
        return Change(ChangeStatus.accepted, spec, value)

    def apply(self, spec: KeySpec, value: Value) -> None:
        """Make a validated value live and tell the listeners."""
        self._values[spec.name] = value
        logger.info("ChangeConfiguration %s = %s", spec.name, spec.shown(value))
        self._notify(spec, value)

    def change(self, name: str, text: str) -> tuple[ChangeStatus, KeySpec | None, Value | None]:
        """Validate and apply in memory only, for values the caller persists itself or not at
        all (HeartbeatInterval from a BootNotification, test set-ups); a ChangeConfiguration
        goes through `set`, which persists first."""
        change = self.validate(name, text)
        if change.status == ChangeStatus.accepted:
            assert change.spec is not None and change.value is not None
            self.apply(change.spec, change.value)
        return change.status, change.spec, change.value

    async def set(self, name: str, text: str, save: Saver) -> Change:
        """ChangeConfiguration and `hilsim config set`, running or not: validate, persist, then
        apply and answer. A value that cannot be saved is Rejected and never in use, so the
        CSMS never hears an error about a value the charge point runs with, nor Accepted about
        one a reboot would lose. ``save`` persists a key whose owner did not `keep_with` it."""
        change = self.validate(name, text)
        if change.status != ChangeStatus.accepted:
            return change
        spec, value = change.spec, change.value
        assert spec is not None and value is not None
        keeper = self._keepers.get(spec.name)
        try:
            if keeper is not None:
                await keeper(value)
            elif spec.writeonly:
                raise HilsimError("no owner here to keep it")
            else:
                await save(spec, value)
        except (HilsimError, OSError) as exc:
            logger.error(
                "ChangeConfiguration %s = %s not saved (%s); Rejected, the value in use is "
                "unchanged", spec.name, spec.shown(value), exc,
            )  # fmt: skip
            return Change(ChangeStatus.rejected, spec, None, f"cannot save {spec.name}: {exc}")
        self.apply(spec, value)
        return change

    def report(
        self, names: Sequence[str] | None
    ) -> tuple[list[tuple[KeySpec, str | None]], list[str]]:
        """Answer a GetConfiguration: (known keys with formatted values, unknown names as given).

        Known keys come in request order, deduplicated by canonical name so asking for a key and
        its alias does not list the setting twice; no names means every key.
        """
        if not names:
            return [(spec, self._reported(spec)) for spec in self._specs], []
        known: list[tuple[KeySpec, str | None]] = []
        unknown: list[str] = []
        seen: set[str] = set()
        for name in names:
            spec = self.spec(name)
            if spec is None:
                unknown.append(name)
            elif spec.name not in seen:
                seen.add(spec.name)
                known.append((spec, self._reported(spec)))
        return known, unknown

    def _reported(self, spec: KeySpec) -> str | None:
        """A write-only key is listed without its value (GetConfiguration's value is optional)."""
        return None if spec.writeonly else spec.format(self._values[spec.name])

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(spec, value)` after every accepted change; returns an unsubscribe."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            # Idempotent, so cleanup paths can call it without tracking whether they already did.
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def as_text(self) -> dict[str, str]:
        """Canonical name -> formatted value, the form the store persists (never a secret)."""
        return {
            spec.name: spec.format(self._values[spec.name])
            for spec in self._specs
            if not spec.writeonly
        }

    def _spec(self, name: str) -> KeySpec:
        spec = self.spec(name)
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


def installation_seed(settings: Settings) -> dict[str, Value]:
    """Key values that follow from the configuration file rather than from the CSMS.

    Seeded at every start, so the read-only ones (NumberOfConnectors) always say what is
    installed, and voltage_V follows the first connector until the CSMS changes it.
    """
    from hilsim.security import security_settings  # the [security] table is parsed there

    return {
        "voltage_V": settings.connectors[0].voltage_V,
        "NumberOfConnectors": len(settings.connectors),
        # Seeded, so a SecurityProfile the CSMS raised is kept, a new [security] profile not lost.
        "SecurityProfile": security_settings(settings).profile,
    }
