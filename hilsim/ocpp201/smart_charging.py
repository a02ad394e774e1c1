"""OCPP 2.0.1 smart charging in the terms of the one schedule engine (`hilsim.smart_charging`).

The engine and `ChargingLimits` speak OCPP 1.6's charging profile (snake_case, one schedule,
``chargingProfileId``, ``ChargePointMaxProfile``, an integer ``transactionId``). A 2.0.1
ChargingProfile differs in names (``id``, ``ChargingStationMaxProfile``), in the transaction's id
(a string the charge point chose; inside the services a transaction is known by its local id),
and in what it can say: up to three schedules, sales tariffs, ``phaseToUse``, the
``ChargingStationExternalConstraints`` purpose. This module translates what the engine can do
and refuses the rest with the 2.0.1 status and a ``statusInfo`` reason code, so nothing is
silently dropped or changed. Its rules beyond 1.6 (OCPP 2.0.1 part 2, use cases K01, K09, K10):

* A TxProfile names its transaction (K01.FR.03) and an EVSE > 0; a ChargingStationMaxProfile is
  on EVSE 0 and not Relative (K01.FR.38); Absolute and Recurring schedules have a
  ``startSchedule``, Relative ones have none (K01.FR.40/41).
* The CSMS does not set ChargingStationExternalConstraints (those come from a local EMS).
* 1.6 replaced a profile of the same stack level, purpose and connector; 2.0.1 refuses a second
  one with overlapping validity (K01.FR.39). The engine keeps one per (stack level, purpose,
  EVSE), so any second one with another id is refused as DuplicateProfile; the same id replaces.

The original 2.0.1 profile travels with its translation under `AS_SENT`, so what
GetChargingProfiles reports is exactly what the CSMS sent (kept in the store's JSON as well).
Pure functions only: the handlers (`smart_charging_handlers`) give them the installed profiles,
the clock and the transaction id mapping.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import groupby
from typing import Any

from hilsim.charging_limits import AS_SENT
from hilsim.smart_charging import Profile, ProfileRejected, Purpose, iso

log = logging.getLogger(__name__)

#: The 2.0.1 transactionId -> the local id the services know the transaction by (None: unknown).
TransactionLookup = Callable[[str], int | None]
#: The other way: a transaction's local id -> its 2.0.1 transactionId (None: unknown).
TransactionName = Callable[[int], str | None]

EXTERNAL = "ChargingStationExternalConstraints"
#: 2.0.1 purposes -> the engine's (1.6) purposes; ExternalConstraints has none.
PURPOSE_TO_16 = {
    "ChargingStationMaxProfile": Purpose.CHARGE_POINT_MAX,
    "TxDefaultProfile": Purpose.TX_DEFAULT,
    "TxProfile": Purpose.TX,
}
PURPOSE_FROM_16 = {str(v): k for k, v in PURPOSE_TO_16.items()}
#: Every profile a CSMS installs has this source (K09: chargingLimitSource).
SOURCE = "CSO"


class Refused(Exception):
    """A request the charge point answers with ``status`` and a statusInfo saying why."""

    def __init__(self, reason_code: str, info: str, status: str = "Rejected") -> None:
        super().__init__(f"{reason_code}: {info}")
        self.status = status
        self.reason_code = reason_code
        self.info = info

    def payload(self) -> dict[str, Any]:
        """The response payload: status and statusInfo (reasonCode <= 20, info <= 512 chars)."""
        return {"status": self.status, "statusInfo": status_info(self.reason_code, self.info)}


def status_info(reason_code: str, info: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"reasonCode": reason_code[:20]}
    if info:
        data["additionalInfo"] = info[:512]
    return data


def camel_case(data: Any) -> Any:
    """The wire's camelCase back from the router's snake_case (``charging_profile_purpose`` ->
    ``chargingProfilePurpose``), for the criteria of ClearChargingProfile and
    GetChargingProfiles: none of their keys has a run of capitals, so each round-trips.
    (SetChargingProfile's profile, customData and all, is taken raw instead.)"""
    if isinstance(data, dict):
        return {_camel_key(str(key)): camel_case(value) for key, value in data.items()}
    if isinstance(data, list):
        return [camel_case(value) for value in data]
    return data


def _camel_key(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


# -- SetChargingProfile (and RequestStartTransaction's chargingProfile) -> the engine ----------


def profile_to_16(
    evse_id: int,
    profile: Mapping[str, Any],
    transaction_of: TransactionLookup,
    *,
    received_at: float,
    remote_start: bool = False,
) -> dict[str, Any]:
    """A 2.0.1 ChargingProfile (camelCase, as on the wire) as the engine's 1.6 profile.

    Returns the snake_case csChargingProfiles `ChargingLimits.set` takes (and
    ``Charger.remote_start`` with ``remote_start``), carrying the original under `AS_SENT`.
    ``evse_id`` 0 is the whole station (connector 0). Raises `Refused` for what the engine
    cannot do or 2.0.1 forbids; the engine's own checks (stack level, rate unit, its connector's
    transaction, ...) still follow when it is installed.
    """
    purpose_201 = str(profile.get("chargingProfilePurpose"))
    if purpose_201 == EXTERNAL:
        raise Refused("InvalidValue", f"{EXTERNAL} are set by a local EMS, not by the CSMS")
    purpose = PURPOSE_TO_16.get(purpose_201)
    if purpose is None:
        raise Refused("InvalidValue", f"unknown chargingProfilePurpose {purpose_201!r}")
    schedules = profile.get("chargingSchedule") or []
    if len(schedules) != 1:
        raise Refused(
            "UnsupportedParam",
            f"{len(schedules)} chargingSchedules: this station follows exactly one (more are "
            "offered only to ISO 15118 vehicles)",
        )
    schedule = schedules[0]
    _check_schedule(schedule)
    kind = str(profile.get("chargingProfileKind"))
    if kind in ("Absolute", "Recurring") and schedule.get("startSchedule") is None:
        raise Refused("InvalidSchedule", f"an {kind} schedule needs startSchedule")
    if kind == "Relative" and schedule.get("startSchedule") is not None:
        raise Refused("InvalidSchedule", "a Relative schedule has no startSchedule")
    if purpose == Purpose.CHARGE_POINT_MAX:
        if evse_id != 0:
            raise Refused("InvalidValue", "a ChargingStationMaxProfile belongs on evseId 0")
        if kind == "Relative":
            raise Refused("InvalidValue", "a ChargingStationMaxProfile cannot be Relative")
    local_id: int | None = None
    tx_id = profile.get("transactionId")
    if purpose == Purpose.TX:
        if evse_id == 0:
            raise Refused("InvalidValue", "a TxProfile needs an EVSE, not evseId 0")
        if remote_start:
            if tx_id is not None:
                raise Refused(
                    "InvalidValue", "a RequestStartTransaction profile names no transaction"
                )
        elif tx_id is None:
            raise Refused("MissingParam", "a TxProfile names its transactionId")
        else:
            local_id = transaction_of(str(tx_id))
            if local_id is None:
                raise Refused("TxNotFound", f"no transaction {tx_id}")
    elif remote_start:
        raise Refused("InvalidValue", "a RequestStartTransaction profile must be a TxProfile")
    elif tx_id is not None:
        raise Refused("InvalidValue", "only a TxProfile names a transactionId")

    converted: dict[str, Any] = {
        "charging_profile_id": profile["id"],
        "stack_level": profile["stackLevel"],
        "charging_profile_purpose": str(purpose),
        "charging_profile_kind": kind,
        "charging_schedule": _schedule_to_16(schedule),
    }
    for key_201, key_16 in (
        ("recurrencyKind", "recurrency_kind"),
        ("validFrom", "valid_from"),
        ("validTo", "valid_to"),
    ):
        if profile.get(key_201) is not None:
            converted[key_16] = profile[key_201]
    if local_id is not None:
        converted["transaction_id"] = local_id
    try:
        Profile.from_wire(evse_id, converted, received_at)  # its rules, with their reason
    except ProfileRejected as exc:
        raise Refused("InvalidProfile", str(exc)) from None
    converted[AS_SENT] = copy.deepcopy(dict(profile))
    return converted


def _check_schedule(schedule: Mapping[str, Any]) -> None:
    if schedule.get("salesTariff") is not None:
        raise Refused("UnsupportedParam", "salesTariff: this station has no ISO 15118 vehicle")
    for period in schedule.get("chargingSchedulePeriod") or []:
        if period.get("phaseToUse") is not None:
            raise Refused("UnsupportedParam", "phaseToUse: this station cannot switch phases")


def _schedule_to_16(schedule: Mapping[str, Any]) -> dict[str, Any]:
    periods = []
    for period in schedule["chargingSchedulePeriod"]:
        item = {"start_period": period["startPeriod"], "limit": period["limit"]}
        if period.get("numberPhases") is not None:
            item["number_phases"] = period["numberPhases"]
        periods.append(item)
    converted: dict[str, Any] = {
        "charging_rate_unit": schedule["chargingRateUnit"],
        "charging_schedule_period": periods,
    }
    for key_201, key_16 in (
        ("duration", "duration"),
        ("startSchedule", "start_schedule"),
        ("minChargingRate", "min_charging_rate"),
    ):
        if schedule.get(key_201) is not None:
            converted[key_16] = schedule[key_201]
    return converted


def duplicate_of(
    evse_id: int, profile: Mapping[str, Any], installed: Iterable[Profile]
) -> Refused | None:
    """K01.FR.39: another profile (not this id) with this stack level and purpose on this EVSE.

    The engine would replace it, as 1.6 does; 2.0.1 refuses, so the CSMS learns of the clash.
    """
    purpose = PURPOSE_TO_16.get(str(profile.get("chargingProfilePurpose")))
    for other in installed:
        if (
            other.id != profile.get("id")
            and other.connector_id == evse_id
            and other.purpose == purpose
            and other.stack_level == profile.get("stackLevel")
        ):
            return Refused(
                "DuplicateProfile",
                f"profile {other.id} has stackLevel {other.stack_level} and this purpose on "
                f"evseId {evse_id}: clear it or send the profile with its id",
            )
    return None


# -- the engine -> 2.0.1: GetChargingProfiles / ReportChargingProfiles ------------------------


def profile_to_201(
    profile: Profile, as_sent: Mapping[str, Any] | None, name_of: TransactionName
) -> dict[str, Any]:
    """An installed profile as a 2.0.1 ChargingProfile: what the CSMS sent when kept, else
    rebuilt from the engine's form (a profile installed without a 2.0.1 original)."""
    if as_sent is not None:
        return copy.deepcopy(dict(as_sent))
    s = profile.schedule
    periods = []
    for p in s.periods:
        period: dict[str, Any] = {"startPeriod": p.start_s, "limit": p.limit}
        if p.number_phases is not None:
            period["numberPhases"] = p.number_phases
        periods.append(period)
    schedule: dict[str, Any] = {
        "id": profile.id,
        "chargingRateUnit": str(s.rate_unit),
        "chargingSchedulePeriod": periods,
    }
    if s.start is not None:
        schedule["startSchedule"] = iso(s.start)
    if s.duration_s is not None:
        schedule["duration"] = s.duration_s
    if s.min_rate is not None:
        schedule["minChargingRate"] = s.min_rate
    data: dict[str, Any] = {
        "id": profile.id,
        "stackLevel": profile.stack_level,
        "chargingProfilePurpose": PURPOSE_FROM_16[str(profile.purpose)],
        "chargingProfileKind": str(profile.kind),
        "chargingSchedule": [schedule],
    }
    if profile.recurrency is not None:
        data["recurrencyKind"] = str(profile.recurrency)
    if profile.valid_from is not None:
        data["validFrom"] = iso(profile.valid_from)
    if profile.valid_to is not None:
        data["validTo"] = iso(profile.valid_to)
    if profile.transaction_id is not None:
        tx_id = name_of(profile.transaction_id)
        if tx_id is not None:
            data["transactionId"] = tx_id
    return data


def select_profiles(
    installed: Iterable[Profile], evse_id: int | None, criterion: Mapping[str, Any]
) -> list[Profile]:
    """The installed profiles a GetChargingProfiles asks for: every given criterion holds.

    ``evse_id`` None: all EVSEs; 0: those on the station itself. Every profile here was set by
    the CSMS, so a ``chargingLimitSource`` list without "CSO" selects none.
    """
    sources = criterion.get("chargingLimitSource")
    if sources is not None and SOURCE not in sources:
        return []
    ids = criterion.get("chargingProfileId")
    purpose_201 = criterion.get("chargingProfilePurpose")
    purpose = None if purpose_201 is None else PURPOSE_TO_16.get(str(purpose_201))
    if purpose_201 is not None and purpose is None:
        return []  # ExternalConstraints: none installed
    stack_level = criterion.get("stackLevel")
    return [
        p
        for p in installed
        if (evse_id is None or p.connector_id == evse_id)
        and (ids is None or p.id in ids)
        and (purpose is None or p.purpose == purpose)
        and (stack_level is None or p.stack_level == stack_level)
    ]


def report_payloads(
    request_id: int, profiles: Sequence[tuple[int, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """ReportChargingProfilesRequests for (evseId, 2.0.1 profile) pairs: one per EVSE, in
    EVSE order, ``tbc`` true on all but the last."""
    ordered = sorted(profiles, key=lambda pair: pair[0])
    payloads = [
        {
            "requestId": request_id,
            "chargingLimitSource": SOURCE,
            "evseId": evse_id,
            "chargingProfile": [profile for _, profile in group],
            "tbc": True,
        }
        for evse_id, group in groupby(ordered, key=lambda pair: pair[0])
    ]
    if payloads:
        payloads[-1]["tbc"] = False
    return payloads


# -- ClearChargingProfile, GetCompositeSchedule ------------------------------------------------


def clear_to_16(
    charging_profile_id: int | None, criteria: Mapping[str, Any] | None
) -> tuple[int | None, int | None, str | None, int | None] | None:
    """ClearChargingProfile's (id, evseId, purpose, stackLevel) in the engine's terms.

    None when nothing can match (ExternalConstraints, which the CSMS never installed): Unknown.
    """
    criteria = criteria or {}
    purpose_201 = criteria.get("chargingProfilePurpose")
    purpose: str | None = None
    if purpose_201 is not None:
        mapped = PURPOSE_TO_16.get(str(purpose_201))
        if mapped is None:
            return None
        purpose = str(mapped)
    return charging_profile_id, criteria.get("evseId"), purpose, criteria.get("stackLevel")


def composite_to_201(evse_id: int, answer: Mapping[str, Any]) -> dict[str, Any]:
    """The engine's GetCompositeSchedule.conf (1.6 form) as a 2.0.1 GetCompositeScheduleResponse.

    The engine refuses only an unknown connector (checked before) or a rate unit that
    ChargingScheduleAllowedChargingRateUnit does not allow.
    """
    if answer.get("status") != "Accepted":
        return Refused("UnsupportedRateUnit", "not an allowed charging rate unit").payload()
    schedule = answer["chargingSchedule"]
    return {
        "status": "Accepted",
        "schedule": {
            "evseId": evse_id,
            "duration": schedule["duration"],
            "scheduleStart": answer["scheduleStart"],
            "chargingRateUnit": schedule["chargingRateUnit"],
            "chargingSchedulePeriod": [dict(p) for p in schedule["chargingSchedulePeriod"]],
        },
    }
