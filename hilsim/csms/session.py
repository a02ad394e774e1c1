"""One connected charge point, as the built-in central system sees it.

A :class:`ChargePointSession` is the ``ocpp`` library's central-system ``ChargePoint`` with

* one ``@on`` handler per charge-point-initiated OCPP 1.6 action (answers come from the
  :class:`~hilsim.csms.server.CentralSystem` settings and its transaction ledger);
* strict checking against the official OCA schemas (see :mod:`hilsim.csms.strict`) instead of the
  library's more lenient copies, answered with the OCPP-J 1.6 error codes;
* a record of every CALL received (:attr:`received`) and every protocol violation seen
  (:attr:`violations`), and :meth:`wait_for` to await them in tests;
* the central-system-initiated calls as plain coroutines returning what is on the wire.

Sharp edges of the ``ocpp`` library handled here (see the architecture notes): ``call()`` is
always used with ``suppress=False``; a CALLERROR becomes :class:`ChargePointCallError`; nothing
is awaited inside a handler except sending its own answer; the library's executor-based
validation is not needed in strict mode and works either way otherwise.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ocpp.charge_point import remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.exceptions import OCPPError, UnknownCallErrorCodeError
from ocpp.messages import Call, CallError, CallResult
from ocpp.v16 import ChargePoint
from ocpp.v16.enums import Action
from websockets.exceptions import ConnectionClosed

from hilsim.csms import strict
from hilsim.csms.commands import CentralSystemCalls
from hilsim.csms.errors import CallTimeout, ChargePointCallError, ChargePointDisconnected
from hilsim.csms.handlers import ChargePointHandlers
from hilsim.ocpp.wire import CALL, CALLERROR, CALLRESULT, QuietLibraryLog

if TYPE_CHECKING:
    from hilsim.csms.server import CentralSystem

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: What a charge point may send while Pending, once the central system asked with TriggerMessage.
_TRIGGERABLE = frozenset(
    {
        "BootNotification",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StatusNotification",
    }
)
#: Actions of the security whitepaper for 1.6: known, not supported here, not a violation to send.
_SECURITY_EXTENSION = frozenset(
    {
        "LogStatusNotification",
        "SecurityEventNotification",
        "SignCertificate",
        "SignedFirmwareStatusNotification",
    }
)
_MAX_UNIQUE_ID = 36  # OCPP-J 1.6 section 4.1.4


@dataclass(frozen=True, slots=True)
class Message:
    """One CALL received from the charge point."""

    action: str
    payload: dict[str, Any]  # camelCase, exactly as on the wire
    at: float  # wall clock of arrival
    unique_id: str = ""


class ChargePointSession(ChargePointHandlers, CentralSystemCalls, ChargePoint):
    """The central system's side of one charge point connection."""

    def __init__(
        self,
        charge_point_id: str,
        connection: Any,
        central: CentralSystem,
        *,
        response_timeout: float = 30,
    ) -> None:
        super().__init__(
            charge_point_id,
            connection,
            response_timeout=response_timeout,
            logger=QuietLibraryLog(logging.getLogger("hilsim.csms.library"), {}),
        )
        self.central = central
        self.strict = central.strict
        #: every CALL received, in arrival order (also the ones answered with a CALLERROR)
        self.received: list[Message] = []
        #: every protocol violation seen on this connection, one readable line each
        self.violations: list[str] = []
        #: the last BootNotification.req payload
        self.boot: dict[str, Any] | None = None
        #: connectorId -> last StatusNotification.req payload
        self.statuses: dict[int, dict[str, Any]] = {}
        self.diagnostics_status: str | None = None
        self.firmware_status: str | None = None
        self.connected_at = time.time()
        self._returned: set[int] = set()  # indexes into received already handed out by wait_for
        self._arrived = asyncio.Condition()
        self._closed = asyncio.Event()
        self._current: Call | None = None
        self._expected: set[str] = set()  # unique ids of our own call()s awaiting an answer
        self._replies: dict[str, list[Any]] = {}  # their answers, as parsed from the wire
        self._raw_waiters: dict[str, asyncio.Future[list[Any]]] = {}
        #: a TriggerMessage went out since the last BootNotification (Pending may then send)
        self.triggered = False
        # Strict mode replaces the library's validation (other schemas, OCPP 2.0 error codes).
        for handlers in self.route_map.values():
            if "_on_action" in handlers:
                handlers["_skip_schema_validation"] = self.strict

    # ----------------------------------------------------------------------------- state

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<ChargePointSession {self.id} {state}, {len(self.received)} CALLs received>"

    def _violation(self, text: str) -> None:
        logger.warning("%s: protocol violation: %s", self.id, text)
        self.violations.append(text)

    async def mark_closed(self) -> None:
        """Called by the server once the connection is gone: wake everyone waiting on it."""
        self._closed.set()
        async with self._arrived:
            self._arrived.notify_all()

    async def close(self) -> None:
        """Close the websocket (normal closure) and wait until the session is torn down."""
        websocket = getattr(self._connection, "websocket", self._connection)
        await websocket.close()
        try:
            async with asyncio.timeout(10):
                await self._closed.wait()
        except TimeoutError:
            logger.warning("%s: connection handler did not finish after close", self.id)

    # ----------------------------------------------------------------------------- receiving

    async def route_message(self, raw_msg: str) -> None:
        """Route one frame from the charge point (replaces the library's router).

        Differences from the library: replies to our own calls are kept raw (for strict checks
        and :meth:`call_raw`); malformed frames are violations and answered when they carry a
        unique id; unknown actions get ``NotImplemented`` as OCPP-J 1.6 says.
        """
        try:
            msg = json.loads(raw_msg)
        except ValueError:
            msg = None
        if not isinstance(msg, list) or not msg:
            self._violation(f"frame is not a JSON array: {raw_msg[:200]!r}")
            return
        kind = msg[0]
        unique_id = msg[1] if len(msg) > 1 else None
        if kind in (CALLRESULT, CALLERROR):
            self._route_reply(msg)
            return
        if kind != CALL:
            self._violation(f"unknown MessageTypeId {kind!r}: {raw_msg[:200]}")
            return
        if not isinstance(unique_id, str):
            self._violation(f"CALL without a string unique id: {raw_msg[:200]}")
            return
        if len(msg) != 4 or not isinstance(msg[2], str):
            text = f"CALL must be [2, uniqueId, action, payload]: {raw_msg[:200]}"
            self._violation(text)
            code = "ProtocolError" if len(msg) < 4 else "FormationViolation"
            await self._send_call_error(unique_id, code, text[:255])
            return
        if len(unique_id) > _MAX_UNIQUE_ID:
            self._violation(f"unique id longer than {_MAX_UNIQUE_ID} characters: {unique_id!r}")
        await self._handle_call(Call(unique_id, msg[2], msg[3]))

    def _route_reply(self, msg: list[Any]) -> None:
        kind = "CALLRESULT" if msg[0] == CALLRESULT else "CALLERROR"
        unique_id = msg[1] if len(msg) > 1 else None
        if not isinstance(unique_id, str):
            self._violation(f"{kind} without a string unique id: {json.dumps(msg)[:200]}")
            return
        waiter = self._raw_waiters.pop(unique_id, None)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(msg)
            return
        if unique_id not in self._expected:
            self._violation(f"{kind} for unique id {unique_id!r}, which no CALL is waiting for")
            return
        self._replies[unique_id] = msg
        # Hand the library a well-formed message even for a malformed frame, so that its
        # call() ends now instead of at its timeout; _call() judges the raw frame.
        reply: CallResult | CallError
        if msg[0] == CALLRESULT:
            if len(msg) != 3:
                self._violation(f"CALLRESULT must be [3, uniqueId, payload]: {json.dumps(msg)}")
            reply = CallResult(unique_id, msg[2] if len(msg) > 2 else {})
        else:
            if len(msg) != 5:
                self._violation(
                    f"CALLERROR must be [4, uniqueId, errorCode, errorDescription, errorDetails]: "
                    f"{json.dumps(msg)[:200]}"
                )
            code = msg[2] if len(msg) > 2 and isinstance(msg[2], str) else "GenericError"
            reply = CallError(unique_id, code, msg[3] if len(msg) > 3 else "", {})
        self._response_queue.put_nowait(reply)

    async def _send_call_error(
        self, unique_id: str, code: str, description: str, details: Any = None
    ) -> None:
        await self._send(CallError(unique_id, code, description, details or {}).to_json())

    async def _handle_call(self, msg: Call) -> None:
        at = time.time()
        self._current = msg
        try:
            await self._answer(msg)
        except ConnectionClosed:
            # The charge point closed while this was answered (it reconnects after a Reset or a
            # new SecurityProfile). What it sent before closing, such as the reply to one of our
            # CALLs, is still to be read: go on reading; the next recv() ends the session.
            logger.debug("%s closed before %s was answered", self.id, msg.action)
        finally:
            self._current = None
            self.received.append(Message(msg.action, msg.payload, at, msg.unique_id))
            async with self._arrived:
                self._arrived.notify_all()

    async def _answer(self, msg: Call) -> None:
        handlers = self.route_map.get(msg.action, {})
        if "_on_action" not in handlers:
            await self._refuse(msg)
            return
        if self.strict:
            found = strict.check(msg.action, msg.payload, response=False)
            if found:
                for violation in found:
                    self._violation(str(violation))
                await self._send_call_error(
                    msg.unique_id,
                    strict.error_code(found),
                    str(found[0])[:255],
                    {"violations": [str(v) for v in found]},
                )
                return
        if self.central.refuse_next.get(msg.action, 0) > 0:
            self.central.refuse_next[msg.action] -= 1
            await self._send_call_error(msg.unique_id, "InternalError", "refused on purpose")
            return
        crafted = self.central.answer_next.get(msg.action)
        if crafted:
            await self._send(CallResult(msg.unique_id, crafted.pop(0)).to_json())
            return
        self._check_registration(msg.action)
        try:
            await super()._handle_call(msg)
        except OCPPError as error:  # the library's own validation, when not strict
            self._violation(f"{msg.action}.req: {error}")
            await self._send(msg.create_call_error(error).to_json())

    async def _refuse(self, msg: Call) -> None:
        """An action without a handler: NotSupported if OCPP 1.6 knows it, else NotImplemented."""
        known = msg.action in Action.__members__.values()
        if not known:
            self._violation(f"{msg.action!r} is not an OCPP 1.6 action")
            code, text = "NotImplemented", f"Unknown action {msg.action!r}"
        else:
            if msg.action not in _SECURITY_EXTENSION:
                self._violation(f"{msg.action}.req is sent by a central system, not a charge point")
            code, text = "NotSupported", f"{msg.action} is not supported by this central system"
        await self._send_call_error(msg.unique_id, code, text)

    def _check_registration(self, action: str) -> None:
        status = self.central.registration_status(self.charge_point_id)
        if action == "BootNotification" or status in (None, "Accepted"):
            return
        if status == "Pending" and self.triggered and action in _TRIGGERABLE:
            return
        self._violation(
            f"{action}.req sent while the registration status is {status} "
            f"(OCPP 1.6 4.2: nothing but BootNotification until Accepted)"
        )

    def current_payload(self) -> dict[str, Any]:
        """The CALL being handled, camelCase as on the wire."""
        assert self._current is not None
        payload: dict[str, Any] = self._current.payload
        return payload

    # ----------------------------------------------------------------------------- waiting

    async def wait_for(
        self,
        action: str,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 10,
    ) -> dict[str, Any]:
        """The payload of the first received, not yet returned CALL of ``action``.

        Messages that arrived before this call count. A message is returned once: the next
        ``wait_for`` of the same action returns a later one. Only messages matching
        ``predicate`` (given the camelCase payload) qualify. A message counts as received once
        the central system has answered it.

        Raises :class:`TimeoutError` naming what was received instead, or
        :class:`ChargePointDisconnected` when the connection closed without it.
        """

        def find() -> int | None:
            for index, message in enumerate(self.received):
                if (
                    message.action == action
                    and index not in self._returned
                    and (predicate is None or predicate(message.payload))
                ):
                    return index
            return None

        async with self._arrived:
            try:
                async with asyncio.timeout(timeout):
                    while (index := find()) is None:
                        if self.closed:
                            raise ChargePointDisconnected(
                                self._describe_wait(action, predicate, "before it disconnected")
                            )
                        await self._arrived.wait()
            except TimeoutError:
                raise TimeoutError(
                    self._describe_wait(action, predicate, f"within {timeout:g} s")
                ) from None
        self._returned.add(index)
        return self.received[index].payload

    def _describe_wait(self, action: str, predicate: object, when: str) -> str:
        what = f"{action}" + (" matching the predicate" if predicate is not None else "")
        if not self.received:
            return f"{self.id}: no {what} {when}; received no CALL at all"
        shown = list(enumerate(self.received))[-30:]
        lines = [
            f"#{index} {message.action} {json.dumps(message.payload)[:160]}"
            + (" (already returned)" if index in self._returned else "")
            for index, message in shown
        ]
        return (
            f"{self.id}: no {what} {when}; received {len(self.received)} CALL(s):\n  "
            + "\n  ".join(lines)
        )

    # ----------------------------------------------------------------------------- calling

    async def _until_closed(self, awaitable: Awaitable[T]) -> T:
        """Await something, but give up with ChargePointDisconnected when the connection goes."""
        task = asyncio.ensure_future(awaitable)
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({task, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            task.cancel()
            closed.cancel()
            await asyncio.wait({task, closed})
        if task.cancelled():
            raise ChargePointDisconnected(f"{self.id} disconnected")
        return task.result()

    async def send_call(self, request: Any) -> dict[str, Any]:
        """Send one CALL through the library and return the CALLRESULT payload as on the wire."""
        action = type(request).__name__
        if self.strict:
            wire = remove_nones(snake_to_camel_case(serialize_as_dict(request)))
            found = strict.check(action, wire, response=False)
            if found:
                raise ValueError("; ".join(str(v) for v in found))
        if self.closed:
            raise ChargePointDisconnected(f"{self.id} is not connected")
        unique_id = str(uuid.uuid4())
        self._expected.add(unique_id)
        if action == "TriggerMessage":
            self.triggered = True
        error: Exception | None = None
        try:
            await self._until_closed(
                self.call(request, suppress=False, unique_id=unique_id, skip_schema_validation=True)
            )
        except ConnectionClosed:
            raise ChargePointDisconnected(f"{self.id} disconnected during {action}") from None
        except ChargePointDisconnected:
            # The answer may have arrived just before the connection closed (a Reset's does):
            # it still counts, even if the library had no time to hand it over.
            if unique_id not in self._replies:
                raise
        except TimeoutError:
            raise CallTimeout(
                f"{self.id} did not answer {action} within {self._response_timeout:g} s"
            ) from None
        except (OCPPError, UnknownCallErrorCodeError, TypeError) as exc:
            # A CALLERROR (raised by the library) or a CALLRESULT its dataclass cannot hold.
            error = exc
        finally:
            self._expected.discard(unique_id)
            reply = self._replies.pop(unique_id, None)
        if reply is None:
            if error is not None:
                raise error
            raise ChargePointDisconnected(f"{self.id}: no answer to {action}")
        if reply[0] == CALLERROR:
            raise ChargePointCallError.from_frame(self.charge_point_id, action, reply)
        payload = reply[2] if len(reply) > 2 else None
        if self.strict:
            for violation in strict.check(action, payload, response=True):
                self._violation(str(violation))
        return payload if isinstance(payload, dict) else {}

    async def send_raw(self, frame_text: str) -> None:
        """Send text that expects no answer (garbage, stray results), to test robustness."""
        if self.closed:
            raise ChargePointDisconnected(f"{self.id} is not connected")
        async with self._call_lock:
            await self._send(frame_text)

    async def call_raw(self, frame_text: str, timeout: float = 10) -> list[Any]:
        """Send a frame exactly as given; return the reply frame with the same unique id.

        For bad-frame tests. The frame needs a string unique id at index 1 (``[2, "id", ...]``);
        the reply (CALLRESULT or CALLERROR, parsed) is not validated and does not reach the
        library, so the normal :meth:`call` flow is unaffected. Waits for any call() in
        progress first (one outstanding CALL at a time).
        """
        try:
            frame = json.loads(frame_text)
        except ValueError:
            frame = None
        unique_id = frame[1] if isinstance(frame, list) and len(frame) > 1 else None
        if not isinstance(unique_id, str):
            raise ValueError(f"call_raw needs a string unique id at index 1: {frame_text[:100]!r}")
        if len(frame) > 2 and frame[2] == "TriggerMessage":
            self.triggered = True
        if self.closed:
            raise ChargePointDisconnected(f"{self.id} is not connected")
        waiter: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._raw_waiters[unique_id] = waiter
        try:
            async with asyncio.timeout(timeout):
                async with self._call_lock:
                    await self._send(frame_text)
                    return await self._until_closed(waiter)
        except TimeoutError:
            raise CallTimeout(
                f"{self.id}: no reply with unique id {unique_id!r} within {timeout:g} s"
            ) from None
        except ConnectionClosed:
            raise ChargePointDisconnected(f"{self.id} disconnected") from None
        finally:
            self._raw_waiters.pop(unique_id, None)

    async def call_action(
        self, action: str, payload: dict[str, Any], timeout: float = 30
    ) -> dict[str, Any]:
        """Any CSMS-to-CP CALL, payload exactly as given (camelCase): the CALLRESULT payload.

        For `hilsim csms send` and scenario files, which name the action and write the payload
        themselves, so there is no dataclass to build. The payload is checked against the
        official schema first (ValueError naming the field); a CALLERROR raises
        :class:`ChargePointCallError`, no answer :class:`CallTimeout`.
        """
        found = strict.check(action, payload, response=False)
        if found:
            raise ValueError("; ".join(str(v) for v in found))
        frame = json.dumps([CALL, str(uuid.uuid4()), action, payload])
        reply = await self.call_raw(frame, timeout=timeout)
        if reply[0] == CALLERROR:
            raise ChargePointCallError.from_frame(self.charge_point_id, action, reply)
        answer = reply[2] if len(reply) > 2 else None
        if self.strict:
            for violation in strict.check(action, answer, response=True):
                self._violation(str(violation))
        return answer if isinstance(answer, dict) else {}
