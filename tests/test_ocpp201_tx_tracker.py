"""The pure OCPP 2.0.1 transaction tracker: TxStartPoint/TxStopPoint decide the events."""

from __future__ import annotations

import itertools

from hilsim.ocpp201.tx_tracker import (
    Draft,
    EvseTracker,
    TxPoints,
    ended,
    parse_points,
    points_from,
    significant,
    stop_reasons,
)

TOKEN = {"idToken": "TAG1", "type": "ISO14443"}


def tracker() -> EvseTracker:
    ids = itertools.count(1)
    return EvseTracker(1, lambda: f"tx-{next(ids)}")


def points(start: str, stop: str = "EVConnected,Authorized") -> TxPoints:
    return TxPoints(parse_points(start), parse_points(stop))


def kinds(drafts: list[Draft]) -> list[tuple[str, str]]:
    return [(d.event_type, d.trigger_reason) for d in drafts]


def test_power_path_closed_starts_with_the_machine_and_ends_with_it() -> None:
    t, p = tracker(), points("PowerPathClosed")
    assert t.ev_connected(p) == []
    assert t.authorized(TOKEN, p, remote=False) == []
    (started,) = t.local_started(TOKEN)
    assert (started.event_type, started.trigger_reason) == ("Started", "Authorized")
    assert started.id_token == TOKEN and started.evse_id == 1
    assert started.charging_state == "Charging" and started.meter == "Transaction.Begin"
    assert started.tx_id == "tx-1"
    (sample,) = t.sample(clock=False)
    assert (sample.trigger_reason, sample.meter) == ("MeterValuePeriodic", "Sample.Periodic")
    assert sample.id_token is None and sample.evse_id is None and sample.charging_state is None
    assert kinds(t.machine_status("SuspendedEV")) == [("Updated", "ChargingStateChanged")]
    assert t.machine_status("SuspendedEV") == []
    (end,) = t.local_stopped("Local", TOKEN, p)
    assert (end.event_type, end.trigger_reason, end.stopped_reason) == (
        "Ended", "StopAuthorized", "Local"
    )  # fmt: skip
    assert end.id_token == TOKEN and end.charging_state == "EVConnected"
    assert t.tx_id is None
    assert t.ev_disconnected(p) == []


def test_plug_after_tag_is_the_trigger_of_a_power_path_start() -> None:
    t, p = tracker(), points("PowerPathClosed")
    t.authorized(TOKEN, p, remote=False)
    t.ev_connected(p)
    (started,) = t.local_started(TOKEN)
    assert started.trigger_reason == "CablePluggedIn"


def test_ev_connected_starts_at_plug_in_and_unplug_ends_it() -> None:
    t, p = tracker(), points("EVConnected")
    (started,) = t.ev_connected(p)
    assert (started.event_type, started.trigger_reason) == ("Started", "CablePluggedIn")
    assert started.charging_state == "EVConnected" and started.id_token is None
    (auth,) = t.authorized(TOKEN, p, remote=False)
    assert (auth.event_type, auth.trigger_reason, auth.id_token) == ("Updated", "Authorized", TOKEN)
    (charging,) = t.local_started(TOKEN)
    assert charging.trigger_reason == "ChargingStateChanged"
    assert charging.charging_state == "Charging"
    assert charging.id_token is None  # sent once
    (end,) = t.local_stopped("EVDisconnected", None, p)
    assert (end.trigger_reason, end.stopped_reason) == ("EVCommunicationLost", "EVDisconnected")
    assert {d.tx_id for d in (started, auth, charging, end)} == {"tx-1"}


def test_ev_connected_without_a_tag_ends_when_the_ev_leaves() -> None:
    t, p = tracker(), points("EVConnected")
    t.ev_connected(p)
    (end,) = t.ev_disconnected(p)
    assert (end.event_type, end.stopped_reason) == ("Ended", "EVDisconnected")
    assert end.charging_state == "Idle"


def test_authorized_starts_before_the_plug_and_a_timeout_ends_it() -> None:
    t, p = tracker(), points("Authorized")
    (started,) = t.authorized(TOKEN, p, remote=False)
    assert started.charging_state == "Idle" and started.id_token == TOKEN
    (end,) = t.deauthorized(timed_out=True, points=p)
    assert (end.trigger_reason, end.stopped_reason) == ("EVConnectTimeout", "Timeout")


def test_authorized_then_plug_then_power() -> None:
    t, p = tracker(), points("Authorized")
    t.authorized(TOKEN, p, remote=False)
    assert kinds(t.ev_connected(p)) == [("Updated", "CablePluggedIn")]
    assert kinds(t.local_started(TOKEN)) == [("Updated", "ChargingStateChanged")]


def test_stop_point_ev_connected_keeps_the_transaction_until_the_ev_leaves() -> None:
    t, p = tracker(), points("PowerPathClosed", "EVConnected")
    t.ev_connected(p)
    t.local_started(TOKEN)
    (held,) = t.local_stopped("Local", TOKEN, p)
    assert (held.event_type, held.trigger_reason) == ("Updated", "StopAuthorized")
    assert held.charging_state == "EVConnected"
    (end,) = t.ev_disconnected(p)
    assert (end.event_type, end.stopped_reason) == ("Ended", "Local")


def test_remote_start_id_goes_with_the_next_event() -> None:
    t, p = tracker(), points("PowerPathClosed")
    t.ev_connected(p)
    central = {"idToken": "APP", "type": "Central"}
    t.remote_start(7, central)
    t.authorized(central, p, remote=True)
    (started,) = t.local_started(central)
    assert started.trigger_reason == "RemoteStart" and started.remote_start_id == 7
    assert started.id_token == central
    (sample,) = t.sample(clock=True)
    assert sample.remote_start_id is None and sample.trigger_reason == "MeterValueClock"
    (end,) = t.local_stopped("Remote", None, p)
    assert (end.trigger_reason, end.stopped_reason) == ("RemoteStop", "Remote")


def test_seq_of_events_and_trigger() -> None:
    t, p = tracker(), points("PowerPathClosed")
    assert t.triggered() == [] and t.sample(clock=False) == []
    t.local_started(TOKEN)
    (trig,) = t.triggered()
    assert trig.trigger_reason == "Trigger" and trig.charging_state == "Charging"
    t.local_stopped("Local", None, p)
    (second,) = t.local_started(TOKEN)
    assert second.tx_id == "tx-2" and second.id_token == TOKEN


def test_stop_reasons_and_power_loss() -> None:
    assert stop_reasons("HardReset") == ("ImmediateReset", "ResetCommand")
    assert stop_reasons("DeAuthorized") == ("DeAuthorized", "Deauthorized")
    assert stop_reasons("Nonsense") == ("Other", "AbnormalCondition")
    draft = ended("abc", "PowerLoss")
    assert (draft.trigger_reason, draft.stopped_reason) == ("AbnormalCondition", "PowerLoss")


def test_parse_points_ignores_unknown_names() -> None:
    assert parse_points(" EVConnected, Authorized ,Bogus") == {"EVConnected", "Authorized"}
    assert parse_points("") == frozenset()


def test_points_from_the_device_model_keep_their_defaults_when_unset() -> None:
    values = {("TxCtrlr", "TxStartPoint"): "EVConnected,Bogus"}
    points = points_from(lambda component, name: values.get((component, name)))
    assert points == TxPoints(frozenset({"EVConnected"}), TxPoints().stop)


def test_a_significant_change_of_the_limit_is_a_charging_rate_changed() -> None:
    t, p = tracker(), points("PowerPathClosed")
    assert t.rate_changed(4000.0, 0.1) == []  # no transaction: only remembered
    t.ev_connected(p)
    t.authorized(TOKEN, p, remote=False)
    t.local_started(TOKEN)
    assert t.rate_changed(4000.0, 0.1) == []  # the limit the transaction started with
    assert t.rate_changed(4300.0, 0.1) == []  # 7.5 %: not significant
    (changed,) = t.rate_changed(4500.0, 0.1)  # 12.5 % from the 4000 W the CSMS knows
    assert (changed.event_type, changed.trigger_reason) == ("Updated", "ChargingRateChanged")
    assert changed.meter is None and changed.charging_state is None
    assert kinds(t.rate_changed(None, 0.1)) == [("Updated", "ChargingRateChanged")]  # gone
    assert kinds(t.rate_changed(0.0, 0.1)) == [("Updated", "ChargingRateChanged")]  # suspended
    assert t.rate_changed(0.0, 0.1) == []
    assert kinds(t.rate_changed(4510.0, 0.0)) == [("Updated", "ChargingRateChanged")]
    assert kinds(t.rate_changed(4511.0, 0.0)) == [("Updated", "ChargingRateChanged")]  # any
    # The machine's transaction ended, its Ended on the way: a limit lifted now is no news.
    assert t.rate_changed(None, 0.1, charging=False) == []
    assert t.limit_W is None


def test_significance() -> None:
    assert not significant(None, None, 0.1) and not significant(5.0, 5.0, 0.0)
    assert significant(None, 1.0, 0.5) and significant(1.0, None, 0.5)
    assert significant(0.0, 1.0, 1.0) and significant(10.0, 0.0, 0.5)
    assert not significant(100.0, 110.0, 0.1) and significant(100.0, 110.1, 0.1)
    assert not significant(100.0, 90.0, 0.1) and significant(100.0, 89.0, 0.1)
