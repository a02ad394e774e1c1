"""The OCPP message log the page shows: a ring of recent frames, decoded only while someone looks.

Recording a frame is one `deque.append` of the object the traced socket already built; nothing is
parsed or serialised until a page opens. Then the ring is replayed once, in order, so each
CALLRESULT is named after its CALL and each frame gets the connector it concerns (a
StopTransaction names only its transaction; the StartTransaction that got that id named the
connector). Secrets are blanked on the way out: the page must never show an AuthorizationKey.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hilsim.ocpp.wire import CALL, CALLERROR, CALLRESULT, Frame

#: Frames kept for a page that opens later.
FRAMES_KEPT = 500
#: A frame longer than this is shown cut (a DataTransfer can carry anything).
MAX_TEXT = 16_000
#: Configuration keys whose value is a secret (lower case). Not case-sensitive in OCPP.
SECRET_KEYS = frozenset({"authorizationkey"})
#: OCPP 2.0.1 variables whose value is a secret (lower case): SetVariables carries it in clear.
SECRET_VARIABLES = frozenset({"basicauthpassword"})
HIDDEN = "(hidden)"
_KINDS = {CALL: "CALL", CALLRESULT: "CALLRESULT", CALLERROR: "CALLERROR"}
#: Unanswered CALLs remembered for naming their results; more means the peer never answers.
_PENDING_KEPT = 256
_TRANSACTIONS_KEPT = 1024


@dataclass(slots=True)
class _Call:
    action: str
    connector: int | None
    payload: Any


class _Decoder:
    """Names and attributes frames in the order they crossed the socket."""

    def __init__(self, connector_of_transaction: Callable[[int], int | None]) -> None:
        self._fallback = connector_of_transaction
        self._pending: dict[str, _Call] = {}
        #: transaction id (1.6: the CSMS's number; 2.0.1: the charge point's UUID) -> connector
        self._transactions: dict[int | str, int] = {}

    def entry(self, seq: int, frame: Frame) -> dict[str, Any]:
        base: dict[str, Any] = {
            "seq": seq,
            "at": round(frame.at, 3),
            "dir": "out" if frame.sent else "in",
        }
        msg = frame.parsed()
        if not msg or msg[0] not in _KINDS or len(msg) < 3:
            text = frame.text if len(frame.text) <= MAX_TEXT else frame.text[:MAX_TEXT] + "…"
            return {
                **base,
                "kind": "malformed",
                "action": "?",
                "name": "(malformed)",
                "connector": None,
                "uid": None,
                "frame": None,
                "text": text,
            }
        kind, uid = msg[0], str(msg[1])
        if kind == CALL and len(msg) >= 4:
            action = str(msg[2])
            payload = msg[3]
            connector = self._connector(payload)
            if len(self._pending) >= _PENDING_KEPT:
                self._pending.pop(next(iter(self._pending)))
            self._pending[uid] = _Call(action, connector, payload)
            name = action
        else:
            call = self._pending.pop(uid, None)
            action = call.action if call else "?"
            connector = call.connector if call else None
            payload = msg[2] if kind == CALLRESULT else None
            if kind == CALLRESULT and call is not None:
                self._learn(call, payload)
                if connector is None:
                    connector = self._connector(payload)
            name = f"{action}.conf" if kind == CALLRESULT else f"{action}.error"
        shown = redact(action, kind, msg)
        text = json.dumps(shown, ensure_ascii=False)
        cut = len(text) > MAX_TEXT
        return {
            **base,
            "kind": _KINDS[kind],
            "action": action,
            "name": name,
            "connector": connector,
            "uid": uid,
            "frame": None if cut else shown,
            "text": text[:MAX_TEXT] + "…" if cut else None,
        }

    def _connector(self, payload: Any) -> int | None:
        """The connector a payload concerns: 1.6's connectorId; 2.0.1's evseId or evse.id (an
        EVSE is the connector of the same id here; its connectorId is always 1); else the
        connector of the transaction it names (2.0.1: transactionInfo's, learnt from the first
        event of a transaction, which names its EVSE)."""
        if not isinstance(payload, dict):
            return None
        evse = payload.get("evse")
        found = payload.get("evseId", evse.get("id") if isinstance(evse, dict) else None)
        if found is None:
            found = payload.get("connectorId")
        info = payload.get("transactionInfo")
        tx = info.get("transactionId") if isinstance(info, dict) else payload.get("transactionId")
        if _is_int(found):
            if isinstance(tx, str) and tx:
                self._remember(tx, found)
            return found
        if _is_int(tx):
            return self._transactions.get(tx) or self._fallback(tx)
        if isinstance(tx, str):
            return self._transactions.get(tx)
        return None

    def _remember(self, tx: int | str, connector: int) -> None:
        if tx not in self._transactions and len(self._transactions) >= _TRANSACTIONS_KEPT:
            self._transactions.pop(next(iter(self._transactions)))
        self._transactions[tx] = connector

    def _learn(self, call: _Call, result: Any) -> None:
        """StartTransaction.conf: from now on this transaction id means that connector."""
        if call.action != "StartTransaction" or call.connector is None:
            return
        if not isinstance(result, dict) or not isinstance(result.get("transactionId"), int):
            return
        self._remember(result["transactionId"], call.connector)


def redact(action: str, kind: int, msg: list[Any]) -> list[Any]:
    """The frame with every secret value replaced; the original is not changed."""
    if action == "ChangeConfiguration" and kind == CALL and isinstance(msg[3], dict):
        payload = msg[3]
        if str(payload.get("key", "")).lower() in SECRET_KEYS and "value" in payload:
            return [*msg[:3], {**payload, "value": HIDDEN}]
    if action == "GetConfiguration" and kind == CALLRESULT and isinstance(msg[2], dict):
        payload = msg[2]
        entries = payload.get("configurationKey")
        if isinstance(entries, list):
            shown = [
                {**e, "value": HIDDEN}
                if isinstance(e, dict)
                and str(e.get("key", "")).lower() in SECRET_KEYS
                and "value" in e
                else e
                for e in entries
            ]
            return [*msg[:2], {**payload, "configurationKey": shown}]
    if action == "SetVariables" and kind == CALL and isinstance(msg[3], dict):
        items = msg[3].get("setVariableData")
        if isinstance(items, list):
            hidden = [_hide_secret_variable(item) for item in items]
            return [*msg[:3], {**msg[3], "setVariableData": hidden}]
    return msg


def _hide_secret_variable(item: Any) -> Any:
    if not isinstance(item, dict) or "attributeValue" not in item:
        return item
    variable = item.get("variable")
    name = variable.get("name", "") if isinstance(variable, dict) else ""
    if str(name).lower() in SECRET_VARIABLES:
        return {**item, "attributeValue": HIDDEN}
    return item


class FrameLog:
    """The last `size` frames, and their decoded entries while at least one page is open."""

    def __init__(
        self,
        connector_of_transaction: Callable[[int], int | None],
        size: int = FRAMES_KEPT,
    ) -> None:
        self.size = size
        self.frames: deque[tuple[int, Frame]] = deque(maxlen=size)
        self._seq = 0
        self._fallback = connector_of_transaction
        self._decoder: _Decoder | None = None
        self._entries: deque[dict[str, Any]] | None = None
        self._undecoded: list[tuple[int, Frame]] = []  # recorded while watched, not yet taken

    @property
    def watched(self) -> bool:
        return self._decoder is not None

    def record(self, frame: Frame) -> None:
        """Keep the frame. Called on the socket's path, so even while watched it only queues:
        decoding waits for `take`, after the charger's own messages have gone."""
        self._seq += 1
        self.frames.append((self._seq, frame))
        if self._decoder is not None:
            self._undecoded.append((self._seq, frame))

    def take(self) -> list[dict[str, Any]]:
        """The entries of the frames recorded since the last take, oldest first."""
        if self._decoder is None or self._entries is None or not self._undecoded:
            return []
        decoder = self._decoder
        entries = [decoder.entry(seq, frame) for seq, frame in self._undecoded]
        self._undecoded.clear()
        self._entries.extend(entries)
        return entries

    def watch(self) -> list[dict[str, Any]]:
        """Start decoding (replaying the ring the first time); the entries, oldest first.

        Frames recorded but not yet taken are not in it: the next `take` has them.
        """
        if self._decoder is None or self._entries is None:
            self._decoder = _Decoder(self._fallback)
            decoder = self._decoder
            self._entries = deque(
                (decoder.entry(seq, frame) for seq, frame in self.frames), maxlen=self.size
            )
        return list(self._entries)

    def decoded(self) -> list[dict[str, Any]]:
        """Every kept frame decoded now, for a one-off request: nothing is left watching."""
        decoder = _Decoder(self._fallback)
        return [decoder.entry(seq, frame) for seq, frame in self.frames]

    def unwatch(self) -> None:
        """Nobody looks any more: drop the decoded copies, keep only the raw ring."""
        self._decoder = None
        self._entries = None
        self._undecoded.clear()


#: The CALLs whose meterValue a chart draws: 1.6's and 2.0.1's outside a transaction, and 2.0.1's
#: within one.
_METERED = frozenset({"MeterValues", "TransactionEvent"})


def power_samples(entries: Iterable[dict[str, Any]]) -> list[tuple[int, float, float]]:
    """(connector, wall time, W) from the meter values in a log: a chart's history at page open."""
    samples: list[tuple[int, float, float]] = []
    for entry in entries:
        frame = entry.get("frame")
        if entry.get("name") not in _METERED or not frame or entry.get("dir") != "out":
            continue
        payload = frame[3] if len(frame) > 3 else None
        connector = entry.get("connector")
        if not isinstance(payload, dict) or not isinstance(connector, int):
            continue
        for value in payload.get("meterValue") or ():
            if not isinstance(value, dict):
                continue
            power = _total_power(value.get("sampledValue") or ())
            if power is not None:
                # A sample sent late from the outbox is drawn when it was taken.
                at = _wall(value.get("timestamp")) or float(entry["at"])
                samples.append((connector, at, power))
    return samples


def _wall(stamp: object) -> float | None:
    if not isinstance(stamp, str):
        return None
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


def _total_power(sampled: Iterable[Any]) -> float | None:
    for s in sampled:
        if not isinstance(s, dict) or s.get("measurand") != "Power.Active.Import" or "phase" in s:
            continue
        try:
            value = float(s["value"])
        except (KeyError, TypeError, ValueError):
            continue
        measure = s.get("unitOfMeasure")  # 2.0.1: a unit and a power of ten
        if isinstance(measure, dict):
            unit, multiplier = measure.get("unit", "W"), measure.get("multiplier", 0)
            if _is_int(multiplier) and -9 <= multiplier <= 9:
                value *= 10.0**multiplier
        else:
            unit = s.get("unit")
        return value * 1000.0 if unit == "kW" else value
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
