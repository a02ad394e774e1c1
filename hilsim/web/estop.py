"""The page's emergency stop: the panel's mushroom button, for a charger that has none fitted.

Same semantics as `hilsim.panel` (see its `_emergency_stop`): pressing it faults every connector
that is not already faulted with stop reason EmergencyStop (a running transaction ends with that
reason, relays open because nothing is Charging), and pressing it again clears exactly those
connectors; one faulted by something else stays faulted. It is a second latch beside the panel's
physical one, and the two never undo each other: while the panel's is engaged, this one cannot be
released, and no fault can be cleared from the page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from hilsim.charger import Charger
from hilsim.evse import ErrorCode, StopReason, events

log = logging.getLogger(__name__)


class EmergencyStop:
    """The page's latch. `panel_engaged` says whether the physical one is engaged."""

    def __init__(self, charger: Charger, panel_engaged: Callable[[], bool]) -> None:
        self.charger = charger
        self.panel_engaged = panel_engaged
        self.engaged = False
        self._held: set[int] = set()  # connectors this latch faulted

    def holds(self, connector_id: int) -> bool:
        """Whether a fault on this connector may not be cleared from the page now."""
        return self.panel_engaged() or (self.engaged and connector_id in self._held)

    def press(self, engage: bool, who: str) -> dict[str, object]:
        """Engage or release; the answer says what happened or why not."""
        if not engage and self.panel_engaged():
            return {
                "ok": False,
                "error": "the emergency stop on the panel is engaged: release it there first",
            }
        if engage == self.engaged:
            state = "engaged" if engage else "released"
            return {"ok": True, "result": {"emergency_stop": state, "changed": False}}
        if engage:
            log.warning("EMERGENCY STOP engaged from the web page (%s)", who)
            self.engaged = True
            stop = events.Fault(ErrorCode.OTHER_ERROR, stop_reason=StopReason.EMERGENCY_STOP)
            for cid, rt in self.charger.connectors.items():
                if rt.machine.state.error_code is not None:
                    continue  # already faulted: keeps its own fault when this is released
                if self.charger.dispatch(cid, stop).accepted:
                    self._held.add(cid)
            return {"ok": True, "result": {"emergency_stop": "engaged", "changed": True}}
        log.warning("emergency stop released from the web page (%s)", who)
        self.engaged = False
        for cid in sorted(self._held):
            if self.charger.connectors[cid].machine.state.error_code is not None:
                self.charger.dispatch(cid, events.ClearFault())
        self._held.clear()
        return {"ok": True, "result": {"emergency_stop": "released", "changed": True}}
