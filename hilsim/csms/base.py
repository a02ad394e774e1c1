"""What every charge point session of the built-in CSMS does, whatever its OCPP version.

:class:`SessionBase` is the version-neutral half of a session: it routes frames (replacing the
``ocpp`` library's router), checks each CALL strictly against the official schemas of the
session's version before a handler sees it, records every CALL received (:attr:`received`)
and every protocol violation (:attr:`violations`), offers :meth:`wait_for` to await them, and
sends the central system's own CALLs (:meth:`send_call` for the library's dataclasses,
:meth:`call_action` for a payload written out, :meth:`call_raw` for any frame).

A version's session (:class:`~hilsim.csms.session.ChargePointSession` for 1.6,
:class:`~hilsim.csms.session201.ChargePointSession201` for 2.0.1) puts it before the library's
``ChargePoint`` of that version and says what differs: :attr:`schemas` (the strict checker),
the error codes for malformed frames, :meth:`refuse_unhandled` and :meth:`registration_problem`.

Sharp edges of the ``ocpp`` library handled here: ``call()`` is always used with
``suppress=False``; a CALLERROR becomes :class:`ChargePointCallError`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from ocpp.charge_point import remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.exceptions import OCPPError, UnknownCallErrorCodeError
from ocpp.messages import Call, CallError, CallResult
from websockets.exceptions import ConnectionClosed

from hilsim.csms.errors import CallTimeout, ChargePointCallError, ChargePointDisconnected
from hilsim.csms.received import Message, ReceivedCalls
from hilsim.ocpp.wire import CALL, CALLERROR, CALLRESULT, ActionNamer, QuietLibraryLog

if TYPE_CHECKING:
    from collections.abc import Sequence

    from hilsim.csms.server import CentralSystem

logger = logging.getLogger(__name__)

T = TypeVar("T")

_MAX_UNIQUE_ID = 36  # OCPP-J 1.6 section 4.1.4, OCPP-J 2.0.1 section 4.1.3


class SchemaChecker(Protocol):
    """The module :mod:`hilsim.csms.strict` (1.6) or :mod:`hilsim.csms.strict201` (2.0.1)."""

    def check(self, action: str, payload: Any, *, response: bool) -> Sequence[Any]: ...

    def error_code(self, violations: Any) -> str: ...


class SessionBase(ReceivedCalls):
    """One charge point connection, any OCPP version; a base before the library's ChargePoint."""

    #: "1.6" or "2.0.1": what `hilsim csms list` shows, what `hilsim csms send` checks against
    ocpp_version: ClassVar[str]
    #: the strict checker of this version's official schemas
    schemas: ClassVar[SchemaChecker]
    #: CALLERROR codes for a CALL with too few elements / with the wrong types in them
    malformed_call_codes: ClassVar[tuple[str, str]]
    #: CALLERROR code for an unknown MessageTypeId with a readable unique id (None: no answer)
    unknown_type_code: ClassVar[str | None] = None
    #: how violations name a request: "BootNotification.req" (1.6), "BootNotificationRequest"
    request_suffix: ClassVar[str]
    #: check the central system's own answers against the schemas too (a violation there is a
    #: bug of this CSMS, recorded and logged as an error; crafted answers are not checked)
    check_answers: ClassVar[bool] = False
    #: names results in the trace ("Heartbeat.conf"; 2.0.1: "HeartbeatResponse")
    trace_namer: ClassVar[type[ActionNamer]] = ActionNamer

    # provided by the library's ChargePoint
    id: str
    route_map: dict[str, dict[str, Any]]

    def __init__(
        self,
        charge_point_id: str,
        connection: Any,
        central: CentralSystem,
        *,
        response_timeout: float = 30,
    ) -> None:
        super().__init__(  # type: ignore[call-arg]  # the library's ChargePoint
            charge_point_id,
            connection,
            response_timeout=response_timeout,
            logger=QuietLibraryLog(logging.getLogger("hilsim.csms.library"), {}),
        )
        self.central = central
        self.strict = central.strict
        self.reset_received()
        #: every protocol violation seen on this connection, one readable line each
        self.violations: list[str] = []
        self.connected_at = time.time()
        self._closed = asyncio.Event()
        self._current: Call | None = None
        self._expected: set[str] = set()  # unique ids of our own call()s awaiting an answer
        self._replies: dict[str, list[Any]] = {}  # their answers, as parsed from the wire
        self._raw_waiters: dict[str, asyncio.Future[list[Any]]] = {}
        #: a TriggerMessage went out since the last BootNotification (Pending may then send)
        self.triggered = False
        #: the actions the central system called since the last BootNotification (2.0.1)
        self.asked: set[str] = set()
        # Strict mode replaces the library's validation (other schemas, other error codes).
        for handlers in self.route_map.values():
            if "_on_action" in handlers:
                handlers["_skip_schema_validation"] = self.strict

    async def refuse_unhandled(self, msg: Call) -> None:
        """Answer a CALL of an action without a handler (NotSupported / NotImplemented)."""
        raise NotImplementedError

    def registration_problem(self, action: str) -> str | None:
        """Why the charge point may not send ``action`` now (registration status), or None."""
        raise NotImplementedError

    @property
    def charge_point_id(self) -> str:
        return str(self.id)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return (
            f"<{type(self).__name__} {self.id} OCPP {self.ocpp_version} {state}, "
            f"{len(self.received)} CALLs received>"
        )

    def record_violation(self, text: str) -> None:
        """A protocol violation seen on this connection: logged and kept in :attr:`violations`."""
        logger.warning("%s: protocol violation: %s", self.id, text)
        self.violations.append(text)

    async def mark_closed(self) -> None:
        """Called by the server once the connection is gone: wake everyone waiting on it."""
        self._closed.set()
        await self.note_arrival()

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
        unique id; unknown actions get ``NotImplemented`` as OCPP-J says.
        """
        try:
            msg = json.loads(raw_msg)
        except ValueError:
            msg = None
        if not isinstance(msg, list) or not msg:
            self.record_violation(f"frame is not a JSON array: {raw_msg[:200]!r}")
            return
        kind = msg[0]
        unique_id = msg[1] if len(msg) > 1 else None
        if kind in (CALLRESULT, CALLERROR):
            self._route_reply(msg)
            return
        if kind != CALL:
            self.record_violation(f"unknown MessageTypeId {kind!r}: {raw_msg[:200]}")
            if self.unknown_type_code is not None and isinstance(unique_id, str):
                await self.send_call_error(
                    unique_id, self.unknown_type_code, f"MessageTypeId {kind!r} is not supported"
                )
            return
        if not isinstance(unique_id, str):
            self.record_violation(f"CALL without a string unique id: {raw_msg[:200]}")
            return
        if len(msg) != 4 or not isinstance(msg[2], str):
            text = f"CALL must be [2, uniqueId, action, payload]: {raw_msg[:200]}"
            self.record_violation(text)
            short, wrong = self.malformed_call_codes
            await self.send_call_error(unique_id, short if len(msg) < 4 else wrong, text[:255])
            return
        if len(unique_id) > _MAX_UNIQUE_ID:
            self.record_violation(f"unique id over {_MAX_UNIQUE_ID} characters: {unique_id!r}")
        await self._handle_call(Call(unique_id, msg[2], msg[3]))

    def _route_reply(self, msg: list[Any]) -> None:
        kind = "CALLRESULT" if msg[0] == CALLRESULT else "CALLERROR"
        unique_id = msg[1] if len(msg) > 1 else None
        if not isinstance(unique_id, str):
            self.record_violation(f"{kind} without a string unique id: {json.dumps(msg)[:200]}")
            return
        waiter = self._raw_waiters.pop(unique_id, None)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(msg)
            return
        if unique_id not in self._expected:
            self.record_violation(f"{kind} for unique id {unique_id!r}, which no CALL is "
                                  "waiting for")  # fmt: skip
            return
        self._replies[unique_id] = msg
        # Hand the library a well-formed message even for a malformed frame, so that its
        # call() ends now instead of at its timeout; send_call() judges the raw frame.
        reply: CallResult | CallError
        if msg[0] == CALLRESULT:
            if len(msg) != 3:
                self.record_violation(f"CALLRESULT must be [3, uniqueId, payload]: {msg}")
            reply = CallResult(unique_id, msg[2] if len(msg) > 2 else {})
        else:
            if len(msg) != 5:
                self.record_violation(
                    f"CALLERROR must be [4, uniqueId, errorCode, errorDescription, errorDetails]: "
                    f"{json.dumps(msg)[:200]}"
                )
            code = msg[2] if len(msg) > 2 and isinstance(msg[2], str) else "GenericError"
            reply = CallError(unique_id, code, msg[3] if len(msg) > 3 else "", {})
        self._response_queue.put_nowait(reply)

    async def send_call_error(
        self, unique_id: str, code: str, description: str, details: Any = None
    ) -> None:
        """Answer the CALL ``unique_id`` with a CALLERROR."""
        await self._send(CallError(unique_id, code, description, details or {}).to_json())

    async def send_call_result(self, unique_id: str, payload: Any) -> None:
        """Answer the CALL ``unique_id`` with this CALLRESULT payload, exactly as given."""
        await self._send(CallResult(unique_id, payload).to_json())

    async def _send(self, message: str) -> None:
        """Every frame this side sends goes out here (the library's own calls it too)."""
        current = self._current
        if self.check_answers and current is not None and message.startswith(f"[{CALLRESULT},"):
            frame = json.loads(message)
            if frame[1] == current.unique_id:
                for violation in self.schemas.check(current.action, frame[2], response=True):
                    logger.error("%s: this CSMS answered off the schema: %s", self.id, violation)
                    self.violations.append(f"CSMS answer: {violation}")
        await super()._send(message)  # type: ignore[misc]  # the library's ChargePoint

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
            await self.note_arrival()

    async def _answer(self, msg: Call) -> None:
        handlers = self.route_map.get(msg.action, {})
        if "_on_action" not in handlers:
            await self.refuse_unhandled(msg)
            return
        if self.strict:
            found = self.schemas.check(msg.action, msg.payload, response=False)
            if found:
                for violation in found:
                    self.record_violation(str(violation))
                await self.send_call_error(
                    msg.unique_id,
                    self.schemas.error_code(found),
                    str(found[0])[:255],
                    {"violations": [str(v) for v in found]},
                )
                return
        if self.central.refuse_next.get(msg.action, 0) > 0:
            self.central.refuse_next[msg.action] -= 1
            await self.send_call_error(msg.unique_id, "InternalError", "refused on purpose")
            return
        crafted = self.central.answer_next.get(msg.action)
        if crafted:
            self._current = None  # sent as given, not judged by check_answers
            await self.send_call_result(msg.unique_id, crafted.pop(0))
            return
        if msg.action != "BootNotification" and (why := self.registration_problem(msg.action)):
            self.record_violation(why)
        try:
            await super()._handle_call(msg)  # type: ignore[misc]  # the library's ChargePoint
        except OCPPError as error:  # the library's own validation, when not strict
            self.record_violation(f"{msg.action}{self.request_suffix}: {error}")
            await self._send(msg.create_call_error(error).to_json())

    def current_payload(self) -> dict[str, Any]:
        """The CALL being handled, camelCase as on the wire."""
        assert self._current is not None
        payload: dict[str, Any] = self._current.payload
        return payload

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
        """Send one CALL (a dataclass of the library's ``call`` module of this version) and
        return the CALLRESULT payload as on the wire."""
        action = type(request).__name__
        if self.strict:
            wire = remove_nones(snake_to_camel_case(serialize_as_dict(request)))
            found = self.schemas.check(action, wire, response=False)
            if found:
                raise ValueError("; ".join(str(v) for v in found))
        if self.closed:
            raise ChargePointDisconnected(f"{self.id} is not connected")
        unique_id = str(uuid.uuid4())
        self._expected.add(unique_id)
        self.asked.add(action)
        if action == "TriggerMessage":
            self.triggered = True
        error: Exception | None = None
        try:
            await self._until_closed(
                self.call(  # type: ignore[attr-defined]  # the library's ChargePoint
                    request, suppress=False, unique_id=unique_id, skip_schema_validation=True
                )
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
            for violation in self.schemas.check(action, payload, response=True):
                self.record_violation(str(violation))
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
        if len(frame) > 2 and isinstance(frame[2], str):
            self.asked.add(frame[2])
            self.triggered = self.triggered or frame[2] == "TriggerMessage"
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

        For `hilsim csms send`, scenario files and tests, which name the action and write the
        payload themselves. The payload is checked against this version's official schema
        first (ValueError naming the field); a CALLERROR raises :class:`ChargePointCallError`,
        no answer :class:`CallTimeout`; an answer off the schema is a violation.
        """
        found = self.schemas.check(action, payload, response=False)
        if found:
            raise ValueError("; ".join(str(v) for v in found))
        frame = json.dumps([CALL, str(uuid.uuid4()), action, payload])
        reply = await self.call_raw(frame, timeout=timeout)
        if reply[0] == CALLERROR:
            raise ChargePointCallError.from_frame(self.charge_point_id, action, reply)
        answer = reply[2] if len(reply) > 2 else None
        if self.strict:
            for violation in self.schemas.check(action, answer, response=True):
                self.record_violation(str(violation))
        return answer if isinstance(answer, dict) else {}
