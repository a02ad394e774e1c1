"""What the built-in central system raises when a call to a charge point does not succeed."""

from __future__ import annotations

from typing import Any

from hilsim.errors import CsmsError


class ChargePointCallError(CsmsError):
    """The charge point answered a CALL of the central system with a CALLERROR."""

    def __init__(
        self,
        charge_point_id: str,
        action: str,
        error_code: str,
        description: str = "",
        details: Any = None,
    ) -> None:
        self.charge_point_id = charge_point_id
        self.action = action
        self.error_code = error_code
        self.description = description
        self.details = details
        text = f"{charge_point_id} answered {action} with CALLERROR {error_code}"
        super().__init__(f"{text}: {description}" if description else text)

    @classmethod
    def from_frame(
        cls, charge_point_id: str, action: str, reply: list[Any]
    ) -> ChargePointCallError:
        """A CALLERROR frame ``[4, id, code, description, details]`` as an exception."""
        return cls(
            charge_point_id,
            action,
            str(reply[2]) if len(reply) > 2 else "",
            str(reply[3]) if len(reply) > 3 else "",
            reply[4] if len(reply) > 4 else None,
        )


class CallTimeout(CsmsError, TimeoutError):
    """The charge point did not answer a CALL in time (or call_raw saw no matching reply)."""


class ChargePointDisconnected(CsmsError):
    """The charge point's websocket closed before (or while) a CALL was answered."""
