"""OCPP configuration keys: parsing, ChangeConfiguration outcomes and GetConfiguration reports."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from hilsim.config import parse_settings
from hilsim.keys import (
    SPECS,
    ChangeStatus,
    ConfigurationKeys,
    KeySpec,
    Value,
    installation_seed,
    lookup,
)

SPEC_NAMES = [
    "HeartbeatInterval",
    "ConnectionTimeOut",
    "MeterValueSampleInterval",
    "ClockAlignedDataInterval",
    "AuthorizeRemoteTxRequests",
    "LocalAuthListEnabled",
    "OCPPAuthorizationEnabled",
    "voltage_V",
]

DEFAULTS: dict[str, Value] = {
    "HeartbeatInterval": 120,
    "ConnectionTimeOut": 60,
    "MeterValueSampleInterval": 30,
    "ClockAlignedDataInterval": 0,
    "AuthorizeRemoteTxRequests": False,
    "LocalAuthListEnabled": False,
    "OCPPAuthorizationEnabled": True,
    "voltage_V": 230.0,
}

# (key, text sent by the CSMS, expected status, expected value when accepted, category)
CHANGES: list[tuple[str, str, ChangeStatus, Value | None, str]] = [
    # valid
    ("HeartbeatInterval", "300", ChangeStatus.accepted, 300, "valid"),
    ("HeartbeatInterval", "1", ChangeStatus.accepted, 1, "valid"),
    ("HeartbeatInterval", "86400", ChangeStatus.accepted, 86400, "valid"),
    ("ConnectionTimeOut", "30", ChangeStatus.accepted, 30, "valid"),
    ("ConnectionTimeOut", "3600", ChangeStatus.accepted, 3600, "valid"),
    ("MeterValueSampleInterval", "0", ChangeStatus.accepted, 0, "valid"),
    ("MeterValueSampleInterval", "+10", ChangeStatus.accepted, 10, "valid"),
    ("ClockAlignedDataInterval", "900", ChangeStatus.accepted, 900, "valid"),
    ("AuthorizeRemoteTxRequests", "true", ChangeStatus.accepted, True, "valid"),
    ("AuthorizeRemoteTxRequests", "TRUE", ChangeStatus.accepted, True, "valid"),
    ("LocalAuthListEnabled", "True", ChangeStatus.accepted, True, "valid"),
    ("OCPPAuthorizationEnabled", "false", ChangeStatus.accepted, False, "valid"),
    ("OCPPAuthorizationEnabled", "False", ChangeStatus.accepted, False, "valid"),
    ("voltage_V", "120", ChangeStatus.accepted, 120.0, "valid"),
    ("voltage_V", "229.5", ChangeStatus.accepted, 229.5, "valid"),
    ("voltage_V", "1000", ChangeStatus.accepted, 1000.0, "valid"),
    # wrong type
    ("HeartbeatInterval", "1.5", ChangeStatus.rejected, None, "type"),
    ("HeartbeatInterval", "true", ChangeStatus.rejected, None, "type"),
    ("HeartbeatInterval", "", ChangeStatus.rejected, None, "type"),
    ("ConnectionTimeOut", "abc", ChangeStatus.rejected, None, "type"),
    ("ConnectionTimeOut", " 30", ChangeStatus.rejected, None, "type"),
    ("MeterValueSampleInterval", "1_000", ChangeStatus.rejected, None, "type"),
    ("ClockAlignedDataInterval", "15m", ChangeStatus.rejected, None, "type"),
    ("ClockAlignedDataInterval", "\u0661\u0662", ChangeStatus.rejected, None, "type"),
    ("AuthorizeRemoteTxRequests", "yes", ChangeStatus.rejected, None, "type"),
    ("LocalAuthListEnabled", "on", ChangeStatus.rejected, None, "type"),
    ("OCPPAuthorizationEnabled", "", ChangeStatus.rejected, None, "type"),
    ("OCPPAuthorizationEnabled", "no", ChangeStatus.rejected, None, "type"),
    ("voltage_V", "abc", ChangeStatus.rejected, None, "type"),
    ("voltage_V", "nan", ChangeStatus.rejected, None, "type"),
    ("voltage_V", "inf", ChangeStatus.rejected, None, "type"),
    ("voltage_V", "230V", ChangeStatus.rejected, None, "type"),
    # out of range; a boolean's range is the two words, so digits are out of it
    ("AuthorizeRemoteTxRequests", "1", ChangeStatus.rejected, None, "range"),
    ("LocalAuthListEnabled", "0", ChangeStatus.rejected, None, "range"),
    ("OCPPAuthorizationEnabled", "2", ChangeStatus.rejected, None, "range"),
    ("HeartbeatInterval", "0", ChangeStatus.rejected, None, "range"),
    ("HeartbeatInterval", "86401", ChangeStatus.rejected, None, "range"),
    ("ConnectionTimeOut", "0", ChangeStatus.rejected, None, "range"),
    ("ConnectionTimeOut", "3601", ChangeStatus.rejected, None, "range"),
    ("MeterValueSampleInterval", "-1", ChangeStatus.rejected, None, "range"),
    ("MeterValueSampleInterval", "86401", ChangeStatus.rejected, None, "range"),
    ("ClockAlignedDataInterval", "-1", ChangeStatus.rejected, None, "range"),
    ("ClockAlignedDataInterval", "86401", ChangeStatus.rejected, None, "range"),
    ("voltage_V", "0.5", ChangeStatus.rejected, None, "range"),
    ("voltage_V", "1000.1", ChangeStatus.rejected, None, "range"),
    ("voltage_V", "1" * 400, ChangeStatus.rejected, None, "range"),
    # the keys added for offline operation
    ("TransactionMessageAttempts", "5", ChangeStatus.accepted, 5, "valid"),
    ("TransactionMessageAttempts", "many", ChangeStatus.rejected, None, "type"),
    ("TransactionMessageAttempts", "0", ChangeStatus.rejected, None, "range"),
    ("TransactionMessageRetryInterval", "0", ChangeStatus.accepted, 0, "valid"),
    ("TransactionMessageRetryInterval", "1.5", ChangeStatus.rejected, None, "type"),
    ("TransactionMessageRetryInterval", "-1", ChangeStatus.rejected, None, "range"),
    ("LocalAuthorizeOffline", "false", ChangeStatus.accepted, False, "valid"),
    ("LocalAuthorizeOffline", "nope", ChangeStatus.rejected, None, "type"),
    ("LocalAuthorizeOffline", "1", ChangeStatus.rejected, None, "range"),
    ("AllowOfflineTxForUnknownId", "true", ChangeStatus.accepted, True, "valid"),
    ("AllowOfflineTxForUnknownId", "y", ChangeStatus.rejected, None, "type"),
    ("AllowOfflineTxForUnknownId", "0", ChangeStatus.rejected, None, "range"),
    ("LocalPreAuthorize", "true", ChangeStatus.accepted, True, "valid"),
    ("LocalPreAuthorize", "si", ChangeStatus.rejected, None, "type"),
    ("LocalPreAuthorize", "2", ChangeStatus.rejected, None, "range"),
    ("AuthorizationCacheEnabled", "false", ChangeStatus.accepted, False, "valid"),
    ("AuthorizationCacheEnabled", "off", ChangeStatus.rejected, None, "type"),
    ("AuthorizationCacheEnabled", "1", ChangeStatus.rejected, None, "range"),
    ("WebSocketPingInterval", "0", ChangeStatus.accepted, 0, "valid"),
    ("WebSocketPingInterval", "30s", ChangeStatus.rejected, None, "type"),
    ("WebSocketPingInterval", "-5", ChangeStatus.rejected, None, "range"),
    # the rest of the Core profile, LocalAuthListManagement and Reservation (OCPP 1.6 9.1-9.3)
    ("MeterValuesSampledData", "Voltage, SoC", ChangeStatus.accepted, "Voltage,SoC", "valid"),
    ("MeterValuesSampledData", "", ChangeStatus.accepted, "", "valid"),
    ("MeterValuesSampledData", "Voltage,,SoC", ChangeStatus.rejected, None, "type"),
    ("MeterValuesSampledData", "Temperature", ChangeStatus.rejected, None, "range"),
    ("MeterValuesSampledData", "SoC,SoC", ChangeStatus.rejected, None, "range"),
    ("MeterValuesSampledData", "voltage", ChangeStatus.rejected, None, "range"),
    ("MeterValuesAlignedData", "Energy.Active.Import.Register,Power.Offered",
     ChangeStatus.accepted, "Energy.Active.Import.Register,Power.Offered", "valid"),
    ("MeterValuesAlignedData", ",", ChangeStatus.rejected, None, "type"),
    ("MeterValuesAlignedData", "RPM", ChangeStatus.rejected, None, "range"),
    ("StopTxnSampledData", "Energy.Active.Import.Register", ChangeStatus.accepted,
     "Energy.Active.Import.Register", "valid"),
    ("StopTxnSampledData", "Voltage,", ChangeStatus.rejected, None, "type"),
    ("StopTxnSampledData", "Power.Factor", ChangeStatus.rejected, None, "range"),
    ("StopTxnAlignedData", "Current.Import,Voltage", ChangeStatus.accepted,
     "Current.Import,Voltage", "valid"),
    ("StopTxnAlignedData", "x" * 501, ChangeStatus.rejected, None, "type"),
    ("StopTxnAlignedData", "Energy.Reactive.Import.Register", ChangeStatus.rejected, None,
     "range"),
    ("ConnectorPhaseRotation", "0.RST,1.RTS,2.NotApplicable", ChangeStatus.accepted,
     "0.RST,1.RTS,2.NotApplicable", "valid"),
    ("ConnectorPhaseRotation", "0.RST,,1.RST", ChangeStatus.rejected, None, "type"),
    ("ConnectorPhaseRotation", "1.XYZ", ChangeStatus.rejected, None, "range"),
    ("ConnectorPhaseRotation", "RST", ChangeStatus.rejected, None, "range"),
    ("StopTransactionOnEVSideDisconnect", "false", ChangeStatus.accepted, False, "valid"),
    ("StopTransactionOnEVSideDisconnect", "nein", ChangeStatus.rejected, None, "type"),
    ("StopTransactionOnEVSideDisconnect", "0", ChangeStatus.rejected, None, "range"),
    ("StopTransactionOnInvalidId", "false", ChangeStatus.accepted, False, "valid"),
    ("StopTransactionOnInvalidId", "off", ChangeStatus.rejected, None, "type"),
    ("StopTransactionOnInvalidId", "1", ChangeStatus.rejected, None, "range"),
    ("MinimumStatusDuration", "10", ChangeStatus.accepted, 10, "valid"),
    ("MinimumStatusDuration", "1e1", ChangeStatus.rejected, None, "type"),
    ("MinimumStatusDuration", "3601", ChangeStatus.rejected, None, "range"),
    # read-only: refused whatever the value, even a well-formed one
    ("NumberOfConnectors", "3", ChangeStatus.rejected, None, "readonly"),
    ("SupportedFeatureProfiles", "Core", ChangeStatus.rejected, None, "readonly"),
    ("SupportedFeatureProfilesMaxLength", "7", ChangeStatus.rejected, None, "readonly"),
    ("GetConfigurationMaxKeys", "50", ChangeStatus.rejected, None, "readonly"),
    ("MeterValuesSampledDataMaxLength", "4", ChangeStatus.rejected, None, "readonly"),
    ("MeterValuesAlignedDataMaxLength", "4", ChangeStatus.rejected, None, "readonly"),
    ("StopTxnSampledDataMaxLength", "4", ChangeStatus.rejected, None, "readonly"),
    ("StopTxnAlignedDataMaxLength", "4", ChangeStatus.rejected, None, "readonly"),
    ("ConnectorPhaseRotationMaxLength", "4", ChangeStatus.rejected, None, "readonly"),
    ("LocalAuthListMaxLength", "10", ChangeStatus.rejected, None, "readonly"),
    ("SendLocalListMaxLength", "10", ChangeStatus.rejected, None, "readonly"),
    ("ReserveConnectorZeroSupported", "false", ChangeStatus.rejected, None, "readonly"),
    ("MaxEnergyOnInvalidId", "0", ChangeStatus.rejected, None, "readonly"),
    # optional Core keys hilsim has nothing to apply to: read-only, never Accepted for nothing
    ("UnlockConnectorOnEVSideDisconnect", "false", ChangeStatus.rejected, None, "readonly"),
    ("ResetRetries", "3", ChangeStatus.rejected, None, "readonly"),
    ("BlinkRepeat", "5", ChangeStatus.rejected, None, "readonly"),
    ("LightIntensity", "50", ChangeStatus.rejected, None, "readonly"),
    # SmartCharging (9.4): all read-only
    ("ChargeProfileMaxStackLevel", "5", ChangeStatus.rejected, None, "readonly"),
    ("ChargingScheduleAllowedChargingRateUnit", "Power", ChangeStatus.rejected, None, "readonly"),
    ("ChargingScheduleMaxPeriods", "10", ChangeStatus.rejected, None, "readonly"),
    ("MaxChargingProfilesInstalled", "5", ChangeStatus.rejected, None, "readonly"),
    # security whitepaper: the profile (guards against going down are hilsim.security's), and the
    # write-only key: 16 to 40 bytes in hexadecimal
    ("SecurityProfile", "2", ChangeStatus.accepted, 2, "valid"),
    ("SecurityProfile", "two", ChangeStatus.rejected, None, "type"),
    ("SecurityProfile", "4", ChangeStatus.rejected, None, "range"),
    ("SecurityProfile", "-1", ChangeStatus.rejected, None, "range"),
    ("AuthorizationKey", "00112233445566778899AABBCCDDEEFF", ChangeStatus.accepted,
     "00112233445566778899AABBCCDDEEFF", "valid"),
    ("AuthorizationKey", "ab" * 40, ChangeStatus.accepted, "ab" * 40, "valid"),
    ("AuthorizationKey", "zz" * 16, ChangeStatus.rejected, None, "type"),
    ("AuthorizationKey", "0" * 33, ChangeStatus.rejected, None, "type"),
    ("AuthorizationKey", "ab" * 15, ChangeStatus.rejected, None, "range"),
    ("AuthorizationKey", "ab" * 41, ChangeStatus.rejected, None, "range"),
    # unknown key
    ("NoSuchKey", "1", ChangeStatus.not_supported, None, "unknown"),
    # a key name is a CiString50: any case is the key
    ("heartbeatinterval", "300", ChangeStatus.accepted, 300, "valid"),
]


OFFLINE_DEFAULTS: dict[str, Value] = {
    "TransactionMessageAttempts": 3,
    "TransactionMessageRetryInterval": 60,
    "LocalAuthorizeOffline": True,
    "AllowOfflineTxForUnknownId": False,
    "LocalPreAuthorize": False,
    "AuthorizationCacheEnabled": True,
    "WebSocketPingInterval": 30,
}


#: Every key of OCPP 1.6 sections 9.1 (Core), 9.2 (LocalAuthListManagement) and 9.3
#: (Reservation): name -> (default, read-only). NumberOfConnectors is seeded from the settings.
PROFILE_KEYS: dict[str, tuple[Value, bool]] = {
    "AllowOfflineTxForUnknownId": (False, False),
    "AuthorizationCacheEnabled": (True, False),
    "AuthorizeRemoteTxRequests": (False, False),
    "BlinkRepeat": (3, True),
    "ClockAlignedDataInterval": (0, False),
    "ConnectionTimeOut": (60, False),
    "ConnectorPhaseRotation": ("0.Unknown", False),
    "ConnectorPhaseRotationMaxLength": (101, True),
    "GetConfigurationMaxKeys": (100, True),
    "HeartbeatInterval": (120, False),
    "LightIntensity": (100, True),
    "LocalAuthorizeOffline": (True, False),
    "LocalPreAuthorize": (False, False),
    "MaxEnergyOnInvalidId": (0, True),
    "MeterValuesAlignedData": ("Energy.Active.Import.Register", False),
    "MeterValuesAlignedDataMaxLength": (8, True),
    "MeterValuesSampledData": (
        "Energy.Active.Import.Register,Power.Active.Import,Current.Import,Voltage,Frequency,SoC",
        False,
    ),
    "MeterValuesSampledDataMaxLength": (8, True),
    "MeterValueSampleInterval": (30, False),
    "MinimumStatusDuration": (0, False),
    "NumberOfConnectors": (1, True),
    "ResetRetries": (1, True),
    "StopTransactionOnEVSideDisconnect": (True, False),
    "StopTransactionOnInvalidId": (True, False),
    "StopTxnAlignedData": ("", False),
    "StopTxnAlignedDataMaxLength": (8, True),
    "StopTxnSampledData": ("", False),
    "StopTxnSampledDataMaxLength": (8, True),
    "SupportedFeatureProfiles": (
        "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,"
        "RemoteTrigger",
        True,
    ),
    "SupportedFeatureProfilesMaxLength": (6, True),
    "TransactionMessageAttempts": (3, False),
    "TransactionMessageRetryInterval": (60, False),
    "UnlockConnectorOnEVSideDisconnect": (True, True),
    "WebSocketPingInterval": (30, False),
    "LocalAuthListEnabled": (False, False),
    "LocalAuthListMaxLength": (1000, True),
    "SendLocalListMaxLength": (250, True),
    "ReserveConnectorZeroSupported": (True, True),
}


def test_specs_are_the_spec_keys_in_order_then_the_offline_keys() -> None:
    assert [spec.name for spec in SPECS[:8]] == SPEC_NAMES
    assert [spec.name for spec in SPECS[8:15]] == list(OFFLINE_DEFAULTS)
    specs = {spec.name: spec for spec in SPECS}
    for name, default in (DEFAULTS | OFFLINE_DEFAULTS).items():
        assert specs[name].default == default
        assert not specs[name].readonly
    for spec in SPECS:
        assert type(spec.default) is spec.kind


@pytest.mark.parametrize(("name", "expected"), PROFILE_KEYS.items(), ids=list(PROFILE_KEYS))
def test_every_key_of_the_core_local_list_and_reservation_profiles(
    name: str, expected: tuple[Value, bool]
) -> None:
    spec = lookup(name)
    assert spec is not None, f"{name} is missing"
    assert (spec.default, spec.readonly) == expected
    assert spec.parse(spec.format(spec.default)) == spec.default


def test_list_keys_are_normalised_and_split() -> None:
    keys = ConfigurationKeys()
    status, spec, value = keys.change("MeterValuesSampledData", " SoC ,Voltage")
    assert status is ChangeStatus.accepted and value == "SoC,Voltage"
    assert spec is not None and spec.items(keys.get("MeterValuesSampledData")) == (
        "SoC",
        "Voltage",
    )
    assert spec.items("") == ()


def test_installation_values_are_seeded_from_the_settings(tmp_path: Path) -> None:
    text = "\n".join(
        ['[charge_point]\nid = "CP"\ncsms_url = "ws://127.0.0.1:9"']
        + [f"[[connector]]\nid = {i}\nvoltage_V = 120.0" for i in (1, 2, 3)]
    )
    seed = installation_seed(parse_settings(text, str(tmp_path / "x.toml")))
    assert seed["NumberOfConnectors"] == 3
    assert seed["voltage_V"] == 120.0
    keys = ConfigurationKeys(seed)
    assert keys.get("NumberOfConnectors") == 3
    assert keys.change("NumberOfConnectors", "4")[0] is ChangeStatus.rejected


def test_lookup_resolves_names_and_aliases_in_any_case() -> None:
    """A key is a CiString50 (OCPP 1.6): case does not matter; answers use the canonical name."""
    spec = lookup("MeterValuesSampleInterval")
    assert spec is not None
    assert spec.name == "MeterValueSampleInterval"
    assert lookup("MeterValueSampleInterval") is spec
    assert lookup("meterValueSampleInterval") is spec
    assert lookup("METERVALUESSAMPLEINTERVAL") is spec
    assert lookup("Nope") is None


@pytest.mark.parametrize(("name", "text", "status", "value", "category"), CHANGES)
def test_change(
    name: str, text: str, status: ChangeStatus, value: Value | None, category: str
) -> None:
    keys = ConfigurationKeys()
    before = keys.as_text()

    result_status, spec, result_value = keys.change(name, text)

    assert result_status is status
    if status is ChangeStatus.accepted:
        assert spec is not None and spec.name.casefold() == name.casefold()
        assert result_value == value
        assert type(result_value) is spec.kind
        assert keys.get(name) == value
    else:
        assert result_value is None
        assert keys.as_text() == before
        if status is ChangeStatus.not_supported:
            assert spec is None
        else:
            assert spec is not None and spec.name == name


def test_every_key_is_covered_by_the_change_table() -> None:
    for spec in SPECS:
        categories = {category for name, *_, category in CHANGES if name == spec.name}
        expected = {"readonly"} if spec.readonly else {"valid", "type", "range"}
        assert categories == expected, spec.name


def test_rejection_is_logged_with_reason(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="hilsim.keys"):
        ConfigurationKeys().change("HeartbeatInterval", "0")
    assert "from 1 to 86400" in caplog.text


def test_change_status_wire_values() -> None:
    assert [s.value for s in ChangeStatus] == [
        "Accepted",
        "Rejected",
        "NotSupported",
        "RebootRequired",
    ]
    assert ChangeStatus.accepted == "Accepted"


def test_alias_reads_and_changes_the_same_setting() -> None:
    keys = ConfigurationKeys()
    assert keys.get("MeterValuesSampleInterval") == 30

    status, spec, value = keys.change("MeterValuesSampleInterval", "15")
    assert status is ChangeStatus.accepted
    assert spec is not None and spec.name == "MeterValueSampleInterval"
    assert value == 15
    assert keys.get("MeterValueSampleInterval") == 15

    keys.change("MeterValueSampleInterval", "45")
    assert keys.get("MeterValuesSampleInterval") == 45
    assert keys.as_text()["MeterValueSampleInterval"] == "45"
    assert "MeterValuesSampleInterval" not in keys.as_text()


def test_readonly_key_is_rejected() -> None:
    keys = ConfigurationKeys({"NumberOfConnectors": 2})
    status, spec, value = keys.change("NumberOfConnectors", "3")
    assert status is ChangeStatus.rejected
    assert spec is not None and spec.readonly
    assert value is None
    assert keys.get("NumberOfConnectors") == 2


def test_initial_values_override_defaults() -> None:
    keys = ConfigurationKeys(
        {"HeartbeatInterval": 10, "MeterValuesSampleInterval": 5, "voltage_V": 120}
    )
    assert keys.get("HeartbeatInterval") == 10
    assert keys.get("MeterValueSampleInterval") == 5
    assert keys.get("voltage_V") == 120.0
    assert isinstance(keys.get("voltage_V"), float)
    assert keys.get("ConnectionTimeOut") == 60


@pytest.mark.parametrize(
    "values",
    [{"Nope": 1}, {"HeartbeatInterval": True}, {"HeartbeatInterval": 0}, {"voltage_V": "230"}],
)
def test_initial_values_are_validated(values: dict[str, object]) -> None:
    with pytest.raises((KeyError, ValueError)):
        ConfigurationKeys(values)  # type: ignore[arg-type]


def test_get_unknown_raises_key_error() -> None:
    with pytest.raises(KeyError):
        ConfigurationKeys().get("Nope")


@pytest.mark.parametrize("names", [None, []])
def test_report_all_keys_in_spec_order(names: list[str] | None) -> None:
    keys = ConfigurationKeys()
    known, unknown = keys.report(names)
    assert [spec.name for spec, _ in known] == [spec.name for spec in SPECS]
    assert [spec.name for spec, _ in known[:15]] == SPEC_NAMES + list(OFFLINE_DEFAULTS)
    assert dict((spec.name, text) for spec, text in known[:8]) == {
        "HeartbeatInterval": "120",
        "ConnectionTimeOut": "60",
        "MeterValueSampleInterval": "30",
        "ClockAlignedDataInterval": "0",
        "AuthorizeRemoteTxRequests": "false",
        "LocalAuthListEnabled": "false",
        "OCPPAuthorizationEnabled": "true",
        "voltage_V": "230.0",
    }
    assert unknown == []


def test_report_requested_keys_with_unknown() -> None:
    keys = ConfigurationKeys()
    keys.change("voltage_V", "229.5")
    known, unknown = keys.report(
        [
            "voltage_V",
            "Foo",
            "MeterValuesSampleInterval",
            "HeartbeatInterval",
            "MeterValueSampleInterval",
            "heartbeatinterval",
            "voltage_V",
        ]
    )
    assert [(spec.name, text) for spec, text in known] == [
        ("voltage_V", "229.5"),
        ("MeterValueSampleInterval", "30"),
        ("HeartbeatInterval", "120"),
    ]
    assert unknown == ["Foo"]  # "heartbeatinterval" is HeartbeatInterval (a CiString50)


def test_listeners_are_called_on_accepted_changes_only() -> None:
    keys = ConfigurationKeys()
    calls: list[tuple[str, Value]] = []
    unsubscribe = keys.subscribe(lambda spec, value: calls.append((spec.name, value)))

    keys.change("MeterValuesSampleInterval", "10")
    keys.change("HeartbeatInterval", "0")
    keys.change("Nope", "1")
    keys.change("OCPPAuthorizationEnabled", "false")
    assert calls == [("MeterValueSampleInterval", 10), ("OCPPAuthorizationEnabled", False)]

    unsubscribe()
    unsubscribe()  # idempotent
    keys.change("HeartbeatInterval", "60")
    assert len(calls) == 2


def test_failing_listener_does_not_block_others_or_the_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys = ConfigurationKeys()
    seen: list[Value] = []

    def broken(spec: KeySpec, value: Value) -> None:
        raise RuntimeError("boom")

    keys.subscribe(broken)
    keys.subscribe(lambda spec, value: seen.append(value))
    with caplog.at_level(logging.ERROR, logger="hilsim.keys"):
        status, _, _ = keys.change("HeartbeatInterval", "30")
    assert status is ChangeStatus.accepted
    assert seen == [30]
    assert keys.get("HeartbeatInterval") == 30
    assert "listener for HeartbeatInterval failed" in caplog.text


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("voltage_V", 230.0, "230.0"),
        ("voltage_V", 230, "230.0"),
        ("voltage_V", 0.1 + 0.2, "0.30000000000000004"),
        ("voltage_V", 229.5, "229.5"),
        ("HeartbeatInterval", 120, "120"),
        ("OCPPAuthorizationEnabled", True, "true"),
        ("LocalAuthListEnabled", False, "false"),
    ],
)
def test_format(name: str, value: Value, text: str) -> None:
    spec = lookup(name)
    assert spec is not None
    assert spec.format(value) == text


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_format_round_trips_through_parse(spec: KeySpec) -> None:
    assert spec.parse(spec.format(spec.default)) == spec.default


def test_parse_error_names_key_and_expectation() -> None:
    spec = lookup("voltage_V")
    assert spec is not None
    with pytest.raises(ValueError, match=r"voltage_V: expected a number from 1.0 to 1000.0"):
        spec.parse("0")
    with pytest.raises(ValueError, match=r"voltage_V: expected a decimal number, got 'nan'"):
        spec.parse("nan")


def test_a_write_only_key_is_never_reported_nor_logged(caplog: pytest.LogCaptureFixture) -> None:
    secret = "0123456789abcdef" * 2
    keys = ConfigurationKeys()
    with caplog.at_level(logging.DEBUG, logger="hilsim.keys"):
        assert keys.change("AuthorizationKey", secret)[0] is ChangeStatus.accepted
        assert keys.change("AuthorizationKey", secret + "x")[0] is ChangeStatus.rejected
    assert secret not in caplog.text
    known, _ = keys.report(["AuthorizationKey"])
    assert [(spec.name, text) for spec, text in known] == [("AuthorizationKey", None)]
    everything, _ = keys.report(None)
    assert ("AuthorizationKey", None) in [(spec.name, text) for spec, text in everything]
    assert "AuthorizationKey" not in keys.as_text()


def test_a_guard_vetoes_a_change() -> None:
    keys = ConfigurationKeys()
    keys.guard("SecurityProfile", lambda value: "no going down" if int(value) < 1 else None)
    assert keys.change("SecurityProfile", "0")[0] is ChangeStatus.rejected
    assert keys.change("SecurityProfile", "1")[0] is ChangeStatus.accepted
    keys.load("SecurityProfile", 0)  # what its owner restores, quietly
    assert keys.get("SecurityProfile") == 0
