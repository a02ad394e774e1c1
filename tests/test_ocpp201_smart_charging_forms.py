"""OCPP 2.0.1 charging profiles in and out of the one schedule engine: what translates, what is
refused (with which reason), and that what goes back on the wire is what the CSMS sent."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from scripted_csms201 import strict_violations

from hilsim.charging_limits import AS_SENT
from hilsim.ocpp201.smart_charging import (
    Refused,
    clear_to_16,
    composite_to_201,
    duplicate_of,
    profile_to_16,
    profile_to_201,
    report_payloads,
    select_profiles,
)
from hilsim.smart_charging import ConnectorContext, Profile, ProfileSet, parse_time

from conftest import make_settings, start_service, stop_service


def assert_valid(action: str, payload: Any, *, response: bool) -> None:
    assert strict_violations(action, payload, response=response) == []


T = parse_time("2026-03-02T10:00:00Z")
TX = "5f3c0a4e-8a9b-4c55-9d3e-1f2a3b4c5d6e"
TRANSACTIONS = {TX: 7}


def lookup(tx_id: str) -> int | None:
    return TRANSACTIONS.get(tx_id)


def name(local_id: int) -> str | None:
    return {v: k for k, v in TRANSACTIONS.items()}.get(local_id)


def profile201(
    profile_id: int = 1,
    *,
    purpose: str = "TxDefaultProfile",
    kind: str = "Absolute",
    stack: int = 0,
    unit: str = "W",
    periods: list[dict[str, Any]] | None = None,
    start: str | None = "2026-03-02T09:00:00.000Z",
    **extra: Any,
) -> dict[str, Any]:
    schedule: dict[str, Any] = {
        "id": 10 + profile_id,
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": periods or [{"startPeriod": 0, "limit": 3680.0}],
    }
    if start is not None:
        schedule["startSchedule"] = start
    return {
        "id": profile_id,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": [schedule],
        **extra,
    }


def convert(evse_id: int, profile: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    assert_valid(
        "SetChargingProfile", {"evseId": evse_id, "chargingProfile": profile}, response=False
    )
    return profile_to_16(evse_id, profile, lookup, received_at=T, **kwargs)


def refusal(evse_id: int, profile: dict[str, Any], **kwargs: Any) -> Refused:
    with pytest.raises(Refused) as caught:
        convert(evse_id, profile, **kwargs)
    assert_valid("SetChargingProfile", caught.value.payload(), response=True)
    return caught.value


def test_a_tx_default_profile_becomes_the_engines_profile_and_carries_its_original() -> None:
    sent = profile201(
        3,
        stack=2,
        periods=[
            {"startPeriod": 0, "limit": 16, "numberPhases": 1},
            {"startPeriod": 3600, "limit": 10.5},
        ],
        validFrom="2026-03-01T00:00:00Z",
        validTo="2026-04-01T00:00:00Z",
        customData={"vendorId": "example.com"},
    )
    sent["chargingSchedule"][0] |= {
        "duration": 7200,
        "minChargingRate": 6.0,
        "chargingRateUnit": "A",
    }
    converted = convert(1, sent)
    assert converted[AS_SENT] == sent and converted[AS_SENT] is not sent
    profile = Profile.from_wire(1, converted, T)
    assert (profile.id, profile.stack_level, str(profile.purpose), str(profile.kind)) == (
        3,
        2,
        "TxDefaultProfile",
        "Absolute",
    )
    s = profile.schedule
    assert [(p.start_s, p.limit, p.number_phases) for p in s.periods] == [
        (0, 16, 1),
        (3600, 10.5, None),
    ]
    assert (str(s.rate_unit), s.duration_s, s.min_rate) == ("A", 7200, 6.0)
    assert s.start == parse_time("2026-03-02T09:00:00Z")
    assert (profile.valid_from, profile.valid_to) == (
        parse_time("2026-03-01T00:00:00Z"),
        parse_time("2026-04-01T00:00:00Z"),
    )


def test_the_station_maximum_is_the_engines_charge_point_maximum_on_connector_0() -> None:
    converted = convert(
        0, profile201(purpose="ChargingStationMaxProfile", kind="Recurring", recurrencyKind="Daily")
    )
    profile = Profile.from_wire(0, converted, T)
    assert str(profile.purpose) == "ChargePointMaxProfile"
    assert str(profile.recurrency) == "Daily"


def test_a_tx_profile_names_its_transaction_by_the_local_id() -> None:
    converted = convert(
        1, profile201(purpose="TxProfile", kind="Relative", start=None, transactionId=TX)
    )
    assert converted["transaction_id"] == 7
    assert Profile.from_wire(1, converted, T).transaction_id == 7


def test_a_request_start_profile_is_a_tx_profile_without_a_transaction() -> None:
    sent = profile201(purpose="TxProfile", kind="Relative", start=None)
    converted = profile_to_16(1, sent, lookup, received_at=T, remote_start=True)
    assert "transaction_id" not in converted and converted[AS_SENT] == sent
    assert refusal(1, profile201(), remote_start=True).reason_code == "InvalidValue"
    tx_named = profile201(purpose="TxProfile", kind="Relative", start=None, transactionId=TX)
    assert refusal(1, tx_named, remote_start=True).reason_code == "InvalidValue"


def two_schedules() -> dict[str, Any]:
    sent = profile201()
    second = copy.deepcopy(sent["chargingSchedule"][0]) | {"id": 99}
    sent["chargingSchedule"].append(second)
    return sent


def sales_tariff() -> dict[str, Any]:
    sent = profile201()
    sent["chargingSchedule"][0]["salesTariff"] = {
        "id": 1,
        "salesTariffEntry": [{"relativeTimeInterval": {"start": 0}}],
    }
    return sent


@pytest.mark.parametrize(
    ("evse_id", "sent", "code"),
    [
        (1, two_schedules(), "UnsupportedParam"),
        (1, sales_tariff(), "UnsupportedParam"),
        (
            1,
            profile201(
                periods=[{"startPeriod": 0, "limit": 16, "numberPhases": 1, "phaseToUse": 2}]
            ),
            "UnsupportedParam",
        ),
        (0, profile201(purpose="ChargingStationExternalConstraints"), "InvalidValue"),
        (1, profile201(purpose="ChargingStationMaxProfile"), "InvalidValue"),
        (
            0,
            profile201(purpose="ChargingStationMaxProfile", kind="Relative", start=None),
            "InvalidValue",
        ),
        (
            0,
            profile201(purpose="TxProfile", kind="Relative", start=None, transactionId=TX),
            "InvalidValue",
        ),
        (1, profile201(purpose="TxProfile", kind="Relative", start=None), "MissingParam"),
        (
            1,
            profile201(purpose="TxProfile", kind="Relative", start=None, transactionId="nope"),
            "TxNotFound",
        ),
        (1, profile201(transactionId=TX), "InvalidValue"),
        (1, profile201(start=None), "InvalidSchedule"),
        (1, profile201(kind="Recurring", start=None, recurrencyKind="Weekly"), "InvalidSchedule"),
        (1, profile201(kind="Relative"), "InvalidSchedule"),
        (1, profile201(periods=[{"startPeriod": 60, "limit": 10}]), "InvalidProfile"),
        (1, profile201(kind="Recurring"), "InvalidProfile"),  # no recurrencyKind
        (
            1,
            profile201(validFrom="2026-03-02T00:00:00Z", validTo="2026-03-01T00:00:00Z"),
            "InvalidProfile",
        ),
    ],
)
def test_what_the_engine_cannot_do_or_2_0_1_forbids_is_refused(
    evse_id: int, sent: dict[str, Any], code: str
) -> None:
    refused = refusal(evse_id, sent)
    assert (refused.status, refused.reason_code) == ("Rejected", code)
    assert refused.info


def installed(*items: tuple[int, dict[str, Any]]) -> list[tuple[Profile, dict[str, Any]]]:
    found = []
    for evse_id, sent in items:
        converted = profile_to_16(evse_id, sent, lookup, received_at=T)
        found.append((Profile.from_wire(evse_id, converted, T), converted[AS_SENT]))
    return found


def test_a_second_profile_on_the_same_stack_level_is_a_duplicate_the_same_id_replaces() -> None:
    profiles = [p for p, _ in installed((1, profile201(1, stack=3)))]
    assert duplicate_of(1, profile201(1, stack=3), profiles) is None
    assert duplicate_of(2, profile201(2, stack=3), profiles) is None
    assert duplicate_of(1, profile201(2, stack=4), profiles) is None
    clash = duplicate_of(1, profile201(2, stack=3), profiles)
    assert clash is not None and clash.reason_code == "DuplicateProfile"


def test_installed_profiles_go_back_exactly_as_sent_or_rebuilt_losslessly() -> None:
    sent = profile201(4, kind="Recurring", recurrencyKind="Weekly", customData={"vendorId": "v"})
    ((profile, original),) = installed((1, sent))
    assert profile_to_201(profile, original, name) == sent
    rebuilt = profile_to_201(profile, None, name)  # installed without a 2.0.1 original
    report = {
        "requestId": 1,
        "chargingLimitSource": "CSO",
        "evseId": 1,
        "chargingProfile": [rebuilt],
    }
    assert_valid("ReportChargingProfiles", report, response=False)
    again = profile_to_16(1, rebuilt, lookup, received_at=T)
    assert Profile.from_wire(1, again, T) == profile
    tx = profile201(5, purpose="TxProfile", kind="Relative", start=None, transactionId=TX)
    ((tx_profile, _),) = installed((1, tx))
    assert profile_to_201(tx_profile, None, name)["transactionId"] == TX


def test_get_charging_profiles_selects_by_every_given_criterion_and_reports_per_evse() -> None:
    pairs = installed(
        (0, profile201(1, purpose="ChargingStationMaxProfile")),
        (1, profile201(2, stack=1)),
        (2, profile201(3, stack=1)),
        (1, profile201(4, stack=2)),
    )
    profiles = [p for p, _ in pairs]

    def ids(evse_id: int | None, **criterion: Any) -> list[int]:
        return [p.id for p in select_profiles(profiles, evse_id, criterion)]

    assert ids(None) == [1, 2, 3, 4]
    assert ids(0) == [1]
    assert ids(1) == [2, 4]
    assert ids(None, chargingProfilePurpose="TxDefaultProfile", stackLevel=1) == [2, 3]
    assert ids(1, chargingProfileId=[3, 4]) == [4]
    assert ids(None, chargingLimitSource=["EMS", "CSO"]) == [1, 2, 3, 4]
    assert ids(None, chargingLimitSource=["EMS"]) == []
    assert ids(None, chargingProfilePurpose="ChargingStationExternalConstraints") == []
    for evse_id in (None, 0, 1):
        request = {"requestId": 5, "chargingProfile": {"chargingLimitSource": ["CSO"]}}
        if evse_id is not None:
            request["evseId"] = evse_id
        assert_valid("GetChargingProfiles", request, response=False)

    by_id = {p.id: (p.connector_id, original) for p, original in pairs}
    reports = report_payloads(9, [by_id[i] for i in (4, 1, 3, 2)])
    assert [(r["evseId"], [p["id"] for p in r["chargingProfile"]], r["tbc"]) for r in reports] == [
        (0, [1], True),
        (1, [4, 2], True),
        (2, [3], False),
    ]
    for report in reports:
        assert report["requestId"] == 9 and report["chargingLimitSource"] == "CSO"
        assert_valid("ReportChargingProfiles", report, response=False)
    assert report_payloads(9, []) == []


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        ({}, (None, None, None, None)),
        ({"chargingProfileId": 7}, (7, None, None, None)),
        (
            {
                "chargingProfileCriteria": {
                    "evseId": 0,
                    "chargingProfilePurpose": "ChargingStationMaxProfile",
                    "stackLevel": 2,
                }
            },
            (None, 0, "ChargePointMaxProfile", 2),
        ),
        (
            {"chargingProfileCriteria": {"chargingProfilePurpose": "TxProfile"}},
            (None, None, "TxProfile", None),
        ),
        (
            {
                "chargingProfileCriteria": {
                    "chargingProfilePurpose": "ChargingStationExternalConstraints"
                }
            },
            None,
        ),
    ],
)
def test_clear_charging_profile_in_the_engines_terms(
    request_: dict[str, Any], expected: tuple[Any, ...] | None
) -> None:
    assert_valid("ClearChargingProfile", request_, response=False)
    assert (
        clear_to_16(request_.get("chargingProfileId"), request_.get("chargingProfileCriteria"))
        == expected
    )


def test_the_engines_composite_schedule_as_a_2_0_1_answer() -> None:
    profiles = ProfileSet()
    for profile, _ in installed(
        (
            1,
            profile201(
                1,
                periods=[{"startPeriod": 0, "limit": 3680}, {"startPeriod": 1800, "limit": 7360.0}],
            ),
        ),
    ):
        profiles.install(profile)
    ctx = [ConnectorContext(1, 11000, 230.0, 1), ConnectorContext(2, 7400, 230.0, 1)]
    start = parse_time("2026-03-02T09:00:00Z")
    schedule = profiles.composite_schedule(1, start, 3600, ctx, grid_voltage_V=230.0)
    answer16 = {
        "status": "Accepted",
        "connectorId": 1,
        "scheduleStart": schedule["startSchedule"],
        "chargingSchedule": schedule,
    }
    answer = composite_to_201(1, answer16)
    assert_valid("GetCompositeSchedule", answer, response=True)
    assert answer["schedule"] == {
        "evseId": 1,
        "duration": 3600,
        "scheduleStart": "2026-03-02T09:00:00.000Z",
        "chargingRateUnit": "W",
        "chargingSchedulePeriod": [
            {"startPeriod": 0, "limit": 3680.0},
            {"startPeriod": 1800, "limit": 7360.0},
        ],
    }
    refused = composite_to_201(1, {"status": "Rejected"})
    assert_valid("GetCompositeSchedule", refused, response=True)
    assert refused["status"] == "Rejected"
    assert refused["statusInfo"]["reasonCode"] == "UnsupportedRateUnit"


async def test_the_original_is_stored_beside_the_engines_form_and_survives_a_restart(
    csms: Any, short_dir: Any
) -> None:
    """ChargingLimits keeps a translated profile's original in the store's JSON (no migration)."""
    sent = profile201(6, purpose="ChargingStationMaxProfile", customData={"vendorId": "v"})
    settings = make_settings(short_dir, csms.url)
    service, task = await start_service(settings)
    try:
        await (await csms.wait_for_charge_point(timeout=5)).wait_for("BootNotification")
        limits = service.charger.smart_charging
        converted = profile_to_16(0, sent, lookup, received_at=T)
        assert await limits.set(0, converted) == "Accepted"
        (profile,) = limits.profiles.profiles
        assert limits.as_sent(profile) == sent
    finally:
        await stop_service(service, task)
    service, task = await start_service(settings)
    try:
        await (await csms.wait_for_charge_point(timeout=5)).wait_for("BootNotification")
        limits = service.charger.smart_charging
        (reloaded,) = limits.profiles.profiles
        assert reloaded == profile
        assert limits.as_sent(reloaded) == sent
        # A profile the 1.6 way (no original) replaces it: the old original is not its answer.
        assert await limits.set(0, profile.to_wire()) == "Accepted"
        assert limits.as_sent(limits.profiles.profiles[0]) is None
    finally:
        await stop_service(service, task)
