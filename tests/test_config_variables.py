"""`hilsim config get/set Component.Variable`: a 2.0.1 charge point's variables from the bench.

A bench engineer sets TxCtrlr.TxStartPoint before the CSMS is even there (offline, through the
database), or while the service runs (through its control socket, the CSMS told by NotifyEvent);
either way the value is checked as a SetVariables would be, and the CSMS reads it back.
"""

from __future__ import annotations

from pathlib import Path

from test_config_changes import hilsim_config

from conftest import make_settings, serving

VERSION = 'ocpp_version = "2.0.1"'


def get_variable(component: str, name: str) -> dict[str, object]:
    return {"getVariableData": [{"component": {"name": component}, "variable": {"name": name}}]}


async def test_offline_a_2_0_1_variable_is_checked_stored_and_read_back(short_dir: Path) -> None:
    settings = make_settings(short_dir, "ws://127.0.0.1:9/ocpp", extra_charge_point=VERSION)
    config = Path(settings.source)
    code, out, _ = await hilsim_config(config, "set", "TxCtrlr.TxStartPoint", "EVConnected")
    assert code == 0 and '"Accepted"' in out
    code, out, _ = await hilsim_config(config, "get", "txctrlr.txstartpoint")  # any case
    assert code == 0 and '"TxCtrlr.TxStartPoint": "EVConnected"' in out
    # Refused as SetVariables refuses: the reason, exit 1, nothing stored.
    code, _, err = await hilsim_config(config, "set", "TxCtrlr.TxStartPoint", "WhenItRains")
    assert code == 1 and err.startswith("hilsim: Rejected: TxCtrlr.TxStartPoint") and err.strip()
    code, _, err = await hilsim_config(config, "set", "TxCtrlr.TxStartPoint", "")
    assert code == 1 and "Rejected" in err
    code, _, err = await hilsim_config(config, "set", "TxCtrlr.NoSuchThing", "1")
    assert code == 1 and "UnknownVariable: no variable TxCtrlr.NoSuchThing" in err
    code, _, err = await hilsim_config(config, "set", "NoSuchCtrlr.TxStartPoint", "1")
    assert code == 1 and "UnknownComponent" in err
    code, _, err = await hilsim_config(config, "set", "TxCtrlr.", "1")
    assert code == 1 and "expected Component.Variable" in err
    # A variable that is a 1.6 key is that key, under either name.
    code, _, _ = await hilsim_config(config, "set", "SampledDataCtrlr.TxUpdatedInterval", "15")
    assert code == 0
    code, out, _ = await hilsim_config(config, "get", "MeterValueSampleInterval")
    assert '"MeterValueSampleInterval": "15"' in out
    code, _, err = await hilsim_config(config, "set", "SampledDataCtrlr.TxUpdatedInterval", "-4")
    assert code == 1 and "Rejected" in err
    # Everything at once: the keys, then the variables without one; never a write-only value.
    code, out, _ = await hilsim_config(config, "set", "SecurityCtrlr.BasicAuthPassword",
                                       "a-password-of-16-bytes-or-more")  # fmt: skip
    assert code == 0
    code, out, _ = await hilsim_config(config, "get")
    assert code == 0
    assert '"TxCtrlr.TxStartPoint": "EVConnected"' in out and '"HeartbeatInterval"' in out
    assert "BasicAuthPassword" not in out and "a-password" not in out

    # The service starts with what was set: the CSMS reads it.
    async with serving(short_dir, "2.0.1") as served:
        asked = get_variable("TxCtrlr", "TxStartPoint")
        answer = await served.session.call_action("GetVariables", asked)
        [result] = answer["getVariableResult"]
        assert (result["attributeStatus"], result["attributeValue"]) == ("Accepted", "EVConnected")


async def test_online_a_change_goes_through_the_service_and_the_csms_hears_of_it(
    short_dir: Path,
) -> None:
    async with serving(short_dir, "2.0.1") as served:
        config, session = Path(served.settings.source), served.session
        code, out, _ = await hilsim_config(config, "set", "TxCtrlr.TxStopPoint", "EVConnected")
        assert code == 0 and '"Accepted"' in out
        notified = await session.wait_for("NotifyEvent", lambda p: any(
            e["variable"]["name"] == "TxStopPoint" for e in p["eventData"]))  # fmt: skip
        [event] = notified["eventData"]
        assert event["actualValue"] == "EVConnected" and event["trigger"] == "Delta"
        asked = get_variable("TxCtrlr", "TxStopPoint")
        answer = await session.call_action("GetVariables", asked)
        assert answer["getVariableResult"][0]["attributeValue"] == "EVConnected"
        code, _, err = await hilsim_config(config, "set", "TxCtrlr.TxStopPoint", "Sometimes")
        assert code == 1 and "Rejected" in err
        code, out, _ = await hilsim_config(config, "get", "TxCtrlr.TxStopPoint")
        assert '"TxCtrlr.TxStopPoint": "EVConnected"' in out  # the refusal changed nothing


async def test_a_1_6_charge_point_says_variables_need_2_0_1(short_dir: Path) -> None:
    config = Path(make_settings(short_dir, "ws://127.0.0.1:9/ocpp").source)
    code, _, err = await hilsim_config(config, "set", "TxCtrlr.TxStartPoint", "EVConnected")
    assert code == 1 and 'ocpp_version = "2.0.1"' in err
    code, _, err = await hilsim_config(config, "get", "TxCtrlr.TxStartPoint")
    assert code == 1 and "unknown configuration key TxCtrlr.TxStartPoint" in err
