"""The table of OCPP configuration keys hilsim knows, as data, and the lookup by name.

Each key is described once, here, so GetConfiguration, ChangeConfiguration, persistence and the
control socket all agree on names, types, ranges and text formatting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from hilsim.keys.spec import KeySpec

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
        description="Most keys one GetConfiguration.req may ask for; a longer list is answered "
        "for its first this many names.",
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
    # -- four optional Core keys hilsim has nothing to apply to: reported read-only, so a CSMS
    # is never told Accepted about a setting that changes nothing (README says why for each).
    KeySpec(
        # No cable lock is simulated: the charge point side is never locked.
        "UnlockConnectorOnEVSideDisconnect",
        bool,
        True,
        readonly=True,
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
        # A reset here cannot fail: there is nothing to try again.
        "ResetRetries",
        int,
        1,
        0,
        10,
        readonly=True,
        description="How often a failed reset is tried again.",
    ),
    KeySpec(
        # The panel's blink patterns are fixed (hilsim.panel.lights).
        "BlinkRepeat",
        int,
        3,
        0,
        100,
        readonly=True,
        description="How often the lights blink when they signal something.",
    ),
    KeySpec(
        # The panel's LEDs have one brightness.
        "LightIntensity",
        int,
        100,
        0,
        100,
        readonly=True,
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


def index_specs(specs: Sequence[KeySpec]) -> Mapping[str, KeySpec]:
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


SPECS_BY_NAME = index_specs(SPECS)


def lookup(name: str) -> KeySpec | None:
    """Find a key by its name or an alias, whatever its case (OCPP: CiString50Type).

    The answer always uses the canonical spelling (`KeySpec.name`).
    """
    return SPECS_BY_NAME.get(name.casefold())


def is_secret_key(name: object) -> bool:
    """Whether a key name, spelt in any case, is a write-only key (AuthorizationKey): what log
    lines and frame views test before they show a value."""
    spec = lookup(name) if isinstance(name, str) else None
    return spec is not None and spec.writeonly
