"""What a session keeps of the CALLs a charge point sent, and :meth:`wait_for` to await them.

A mixin of :class:`~hilsim.csms.base.SessionBase`, the same for every OCPP version, so that
tests wait for a 2.0.1 TransactionEvent exactly as for a 1.6 StartTransaction.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hilsim.csms.errors import ChargePointDisconnected

__all__ = ["Message", "ReceivedCalls"]


@dataclass(frozen=True, slots=True)
class Message:
    """One CALL received from the charge point."""

    action: str
    payload: dict[str, Any]  # camelCase, exactly as on the wire
    at: float  # wall clock of arrival
    unique_id: str = ""


class ReceivedCalls:
    """Every CALL received (:attr:`received`) and the way to wait for one."""

    id: str
    #: every CALL received, in arrival order (also the ones answered with a CALLERROR)
    received: list[Message]

    @property
    def closed(self) -> bool:
        raise NotImplementedError  # the session's

    def reset_received(self) -> None:
        """Start with nothing received (the session's constructor calls this)."""
        self.received = []
        self._returned: set[int] = set()  # indexes into received already handed out
        self._arrived = asyncio.Condition()

    async def note_arrival(self) -> None:
        """Wake every :meth:`wait_for`: a CALL was appended or the connection closed."""
        async with self._arrived:
            self._arrived.notify_all()

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
