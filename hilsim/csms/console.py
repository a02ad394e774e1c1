"""The control socket of a running `hilsim csms`: `hilsim csms send` and `hilsim csms list`.

A tester at a bench wants to make the central system do something (RemoteStart, Reset,
SetChargingProfile...) in one line, without writing Python against :class:`ChargePointSession`.
The socket is the charge point's control socket machinery (:mod:`hilsim.control`): one JSON
request per line, one JSON answer per line, a Unix socket so only local users may drive it.

Payloads are checked against the official schema of the charge point's OCPP version (1.6 or
2.0.1). The command cannot know that version, so it sends the words typed and the server,
which knows, turns them into the payload and checks it (a typo is named, nothing is sent, exit
2); an action that exists in one version only is checked in the command already.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hilsim.csms.actions201 import CSMS_ACTIONS_201
from hilsim.csms.errors import CallTimeout, ChargePointCallError, ChargePointDisconnected
from hilsim.errors import HilsimError

if TYPE_CHECKING:
    from hilsim.csms.server import CentralSystem

logger = logging.getLogger(__name__)

#: Every OCPP 1.6 CALL a central system sends to a charge point (core and all optional profiles).
CSMS_ACTIONS = (
    "CancelReservation",
    "ChangeAvailability",
    "ChangeConfiguration",
    "ClearCache",
    "ClearChargingProfile",
    "DataTransfer",
    "GetCompositeSchedule",
    "GetConfiguration",
    "GetDiagnostics",
    "GetLocalListVersion",
    "RemoteStartTransaction",
    "RemoteStopTransaction",
    "ReserveNow",
    "Reset",
    "SendLocalList",
    "SetChargingProfile",
    "TriggerMessage",
    "UnlockConnector",
    "UpdateFirmware",
)


class BadCall(HilsimError, ValueError):
    """What the tester typed is not a valid CALL: unknown action, bad argument, schema violation."""

    exit_status = 2


def default_socket() -> Path:
    """Where `hilsim csms` listens for `csms send`/`csms list` unless told otherwise.

    Per user, so that two testers on one machine each have their own: $XDG_RUNTIME_DIR when the
    session has one (systemd logins do), else the temp directory with the uid in the name.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "hilsim-csms.sock"
    return Path(tempfile.gettempdir()) / f"hilsim-csms-{os.getuid()}.sock"


#: OCPP version -> the CALLs a central system sends in it
ACTIONS_BY_VERSION = {"1.6": CSMS_ACTIONS, "2.0.1": CSMS_ACTIONS_201}


def action_named(name: str, version: str | None = "1.6", who: str = "") -> str:
    """The action spelled as OCPP spells it (case-insensitive on input), or BadCall.

    ``version``: the charge point's OCPP version ("1.6", "2.0.1"; ``who`` names it); None:
    any version's action will do (`hilsim csms send`, before it knows the charge point).
    """
    versions = [version] if version is not None else list(ACTIONS_BY_VERSION)
    for candidate in versions:
        for action in ACTIONS_BY_VERSION[candidate]:
            if action.casefold() == name.casefold():
                return action
    if version is None:
        raise BadCall(
            f"{name!r} is not a CSMS-to-charge-point OCPP 1.6 or 2.0.1 action; expected one "
            f"of: {', '.join(CSMS_ACTIONS)} (1.6); {', '.join(CSMS_ACTIONS_201)} (2.0.1)"
        )
    speaks = f" ({who} speaks OCPP {version})" if who else ""
    raise BadCall(
        f"{name!r} is not a CSMS-to-charge-point OCPP {version} action{speaks}; expected one "
        f"of: {', '.join(ACTIONS_BY_VERSION[version])}"
    )


def versions_of(action: str) -> list[str]:
    """The OCPP versions in which the central system sends ``action``."""
    return [version for version, known in ACTIONS_BY_VERSION.items() if action in known]


def _schemas(version: str) -> Any:
    """The strict checker of a version: :mod:`hilsim.csms.strict` or ``strict201``."""
    if version == "2.0.1":
        from hilsim.csms import strict201

        return strict201
    from hilsim.csms import strict

    return strict


def parse_payload(action: str, words: Sequence[str], version: str = "1.6") -> dict[str, Any]:
    """The CALL payload from the command line words: JSON objects and ``key=value`` pairs.

    A value is JSON where it parses as JSON (numbers, booleans, objects, arrays), else a string;
    where the schema says the field is a string it stays the text typed (``idTag=1234``). Dotted
    keys nest: ``csChargingProfiles.stackLevel=0``. Later words override earlier ones.
    """
    schema = _schemas(version).schema(action, response=False)
    payload: dict[str, Any] = {}
    for word in words:
        if word.lstrip().startswith("{"):
            try:
                value = json.loads(word)
            except ValueError as exc:
                raise BadCall(f"{word!r}: not a JSON object ({exc})") from None
            if not isinstance(value, dict):
                raise BadCall(f"{word!r}: not a JSON object")
            _merge(payload, value)
            continue
        key, equals, text = word.partition("=")
        if not equals or not key:
            raise BadCall(f"{word!r}: expected a JSON object or KEY=VALUE")
        path = key.split(".")
        if any(not part for part in path):
            raise BadCall(f"{word!r}: empty part in the dotted key {key!r}")
        node = payload
        for depth, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise BadCall(f"{word!r}: {'.'.join(path[: depth + 1])} is not an object")
            node = child
        node[path[-1]] = _value(text, _field_schema(schema, path))
    return payload


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _field_schema(schema: dict[str, Any], path: Sequence[str]) -> dict[str, Any]:
    """The schema of a dotted field; 2.0.1 schemas reach their types by "$ref"."""

    def resolved(node: dict[str, Any]) -> dict[str, Any]:
        reference = node.get("$ref", "")
        if reference.startswith("#/definitions/"):
            found: dict[str, Any] = schema.get("definitions", {}).get(reference[14:], {})
            return found
        return node

    node: dict[str, Any] = schema
    for part in path:
        node = resolved(resolved(node).get("properties", {}).get(part, {}))
    return node


def _value(text: str, field: dict[str, Any]) -> Any:
    if field.get("type") == "string":
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def problems(action: str, payload: Any, version: str = "1.6") -> list[str]:
    """Every way the payload breaks the official schema of ``action``'s CALL, field named."""
    found = _schemas(version).check(action, payload, response=False)
    return [str(violation) for violation in found]


def checked(action: str, payload: Any, version: str = "1.6", who: str = "") -> dict[str, Any]:
    """The payload, if valid for ``action`` (a CSMS-to-CP action of ``version``); else BadCall
    saying why."""
    action = action_named(action, version, who)
    found = problems(action, payload, version)
    if found:
        raise BadCall("; ".join(found))
    assert isinstance(payload, dict)
    return payload


def charge_points(central: CentralSystem) -> list[dict[str, Any]]:
    """`hilsim csms list`: each connected charge point, its connectors, its open transactions."""
    listed = []
    for charge_point_id, session in sorted(central.sessions.items()):
        if session.ocpp_version == "2.0.1":
            listed.append(_charging_station(central, charge_point_id, session))
            continue
        boot = session.boot or {}
        listed.append(
            {
                "id": charge_point_id,
                "ocppVersion": session.ocpp_version,
                "registration": central.registration_status(charge_point_id),
                "vendor": boot.get("chargePointVendor"),
                "model": boot.get("chargePointModel"),
                "connectors": {
                    str(connector): {
                        "status": status.get("status"),
                        "errorCode": status.get("errorCode"),
                    }
                    for connector, status in sorted(session.statuses.items())
                },
                "transactions": [
                    {
                        "transactionId": record.transaction_id,
                        "connectorId": record.connector_id,
                        "idTag": record.id_tag,
                        "meterStart": record.meter_start,
                        "startTimestamp": record.start_timestamp,
                    }
                    for record in central.ledger.values()
                    if record.active and record.charge_point_id == charge_point_id
                ],
            }
        )
    return listed


def _charging_station(central: CentralSystem, charge_point_id: str, session: Any) -> dict[str, Any]:
    """A 2.0.1 charge point in `hilsim csms list`: its EVSEs' connector statuses
    (evseId -> connectorId -> connectorStatus) and its transactions not Ended."""
    station = (session.boot or {}).get("chargingStation", {})
    return {
        "id": charge_point_id,
        "ocppVersion": session.ocpp_version,
        "registration": central.registration_status(charge_point_id),
        "vendor": station.get("vendorName"),
        "model": station.get("model"),
        "evses": {
            str(evse): {str(c): status["connectorStatus"] for c, status in sorted(found.items())}
            for evse, found in sorted(session.evses.items())
        },
        "transactions": [
            {
                "transactionId": record.transaction_id,
                "evseId": record.evse_id,
                "connectorId": record.connector_id,
                "idToken": (record.id_token or {}).get("idToken"),
                "startTimestamp": record.start_timestamp,
                "chargingState": record.charging_state,
                "seqNo": record.seq_nos[-1],
                "seqNoMissing": record.gaps,
            }
            for record in central.ledger201.open_for(charge_point_id)
        ],
    }


def add_arguments(csms: argparse.ArgumentParser, actions: Callable[[], Any]) -> None:
    """`hilsim csms`'s options and its send/list actions (``actions()`` makes the ACTION
    subparsers, each with the command line's ``--config``); the options live here, next to what
    they drive."""
    csms.description = (
        "Without ACTION: run the built-in central system (OCPP 1.6J and 2.0.1 charge points), "
        "printing every frame. "
        "With send or list: drive the one running (README: CSMS console)."
    )
    csms.add_argument("--host", help="address to listen on (default from [csms], 127.0.0.1)")
    csms.add_argument("--port", type=int, help="port to listen on (default from [csms], 9000)")
    csms.add_argument(
        "--id-tag", action="append", dest="id_tags", help="an idTag to accept (repeatable)"
    )
    # Security profiles 1-3 against the built-in CSMS (hilsim.security, README "Security").
    csms.add_argument("--tls-cert", type=Path, metavar="PEM", help="serve wss:// with this cert")
    csms.add_argument("--tls-key", type=Path, metavar="PEM", help="the certificate's key")
    csms.add_argument(
        "--client-ca", type=Path, metavar="PEM",
        help="demand client certificates signed by this CA, CN = charge point id (profile 3)",
    )  # fmt: skip
    csms.add_argument(
        "--password", action="append", dest="passwords", metavar="ID=FILE",
        help="require Basic auth; charge point ID's password is in FILE (repeatable)",
    )  # fmt: skip
    where = default_socket()
    socket_help = f"control socket of the running `hilsim csms` (default {where})"
    csms.add_argument(
        "--socket", type=Path, default=where, metavar="PATH",
        help=f"serve `csms send`/`csms list` on this Unix socket (default {where}: in "
        "$XDG_RUNTIME_DIR if set, else in the temp directory with your uid)",
    )  # fmt: skip
    csms_sub = actions()
    send = csms_sub.add_parser(
        "send",
        help="send a CALL to a connected charge point, print the answer as JSON",
        description="Send one OCPP CALL from the running `hilsim csms` to a connected charge "
        "point and print the CALLRESULT (exit 0) or CALLERROR (exit 1) as JSON. The action and "
        "payload are checked against the official schema of the OCPP version the charge point "
        "speaks, 1.6 or 2.0.1 (`hilsim csms list` shows it), first (exit 2 naming the field).",
        epilog=textwrap.fill("OCPP 1.6 actions: " + ", ".join(CSMS_ACTIONS), 79)
        + "\n\n"
        + textwrap.fill("OCPP 2.0.1 actions: " + ", ".join(CSMS_ACTIONS_201), 79)
        + "\n\nexamples:\n"
        "  hilsim csms send CP1 RemoteStartTransaction idTag=04A2B3C4 connectorId=1\n"
        "  hilsim csms send CP1 Reset type=Soft\n"
        "  hilsim csms send CP1 SetChargingProfile connectorId=1 "
        "csChargingProfiles='{...}'\n"
        "  hilsim csms send CP201 RequestStartTransaction remoteStartId=1 evseId=1 \\\n"
        '      \'idToken={"idToken": "04A2B3C4", "type": "ISO14443"}\'\n'
        '  hilsim csms send CP201 GetVariables \'getVariableData=[{"component": '
        '{"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]\'\n'
        "values are JSON where they parse (numbers, true, objects), else text; "
        "dotted keys nest (csChargingProfiles.stackLevel=0, idToken.type=ISO14443)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    send.add_argument("charge_point", metavar="CP-ID", help="the charge point's id")
    send.add_argument(
        "action", metavar="ACTION", help="the OCPP action (listed below; any letter case)"
    )
    send.add_argument(
        "arguments", nargs="*", metavar="JSON|KEY=VALUE", help="the payload, in pieces"
    )
    send.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS",
        help="how long to wait for the answer (default 30)",
    )  # fmt: skip
    send.add_argument(
        "--socket", type=Path, default=argparse.SUPPRESS, metavar="PATH", help=socket_help
    )
    listing = csms_sub.add_parser(
        "list",
        help="print the connected charge points (OCPP version, connector or EVSE statuses, open "
        "transactions)",
    )
    listing.add_argument(
        "--socket", type=Path, default=argparse.SUPPRESS, metavar="PATH", help=socket_help
    )


class Console:
    """The request handler behind the CSMS's control socket."""

    def __init__(self, central: CentralSystem) -> None:
        self.central = central

    async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request["cmd"]
        if cmd == "list":
            return {"ok": True, "result": charge_points(self.central)}
        if cmd == "send":
            return await self._send(request)
        return {"ok": False, "kind": "invalid", "error": f"unknown command {cmd!r}"}

    async def _send(self, request: dict[str, Any]) -> dict[str, Any]:
        """``payload`` (a JSON object) or ``arguments`` (the words typed, parsed here by the
        charge point's version) for ``action`` to ``charge_point``."""
        charge_point_id = str(request.get("charge_point", ""))
        try:
            action_named(str(request.get("action", "")), None)
            timeout = float(request.get("timeout", 30))
        except (BadCall, TypeError, ValueError) as exc:
            return {"ok": False, "kind": "invalid", "error": str(exc)}
        session = self.central.sessions.get(charge_point_id)
        if session is None or session.closed:
            connected = ", ".join(sorted(self.central.sessions)) or "none"
            return {
                "ok": False,
                "kind": "offline",
                "error": f"charge point {charge_point_id!r} is not connected "
                f"(connected: {connected})",
            }
        version = session.ocpp_version
        try:
            action = action_named(str(request["action"]), version, charge_point_id)
            if "arguments" in request:
                words = [str(word) for word in request["arguments"]]
                payload = parse_payload(action, words, version)
            else:
                payload = request.get("payload", {})
            payload = checked(action, payload, version, charge_point_id)
        except (BadCall, TypeError, ValueError) as exc:
            return {"ok": False, "kind": "invalid", "error": str(exc)}
        try:
            answer = await session.call_action(action, payload, timeout=timeout)
        except ChargePointCallError as exc:
            error = {
                "errorCode": exc.error_code,
                "errorDescription": exc.description,
                "errorDetails": exc.details if exc.details is not None else {},
            }
            return {"ok": False, "kind": "callerror", "error": str(exc), "result": error}
        except CallTimeout as exc:
            return {"ok": False, "kind": "timeout", "error": str(exc)}
        except ChargePointDisconnected as exc:
            return {"ok": False, "kind": "offline", "error": str(exc)}
        return {"ok": True, "result": answer}
