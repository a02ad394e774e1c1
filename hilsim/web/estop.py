"""The page's emergency stop: the panel's mushroom button, for a charger that has none fitted.

Pressing it raises a fault of its own source (`FaultSource.WEB_ESTOP`) on every connector, with
stop reason EmergencyStop (a running transaction ends with that reason, relays open because
nothing is Charging); pressing it again clears that source's fault, so a connector faulted by
something else as well stays faulted, and the connectors themselves remember which fault is
whose. It never undoes the panel's physical one: while the panel's is engaged, this one cannot be
released, and no fault can be cleared from the page; while this one is engaged, neither can a
fault of a connector it holds (clearing from the page clears every source).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from hilsim.charger import Charger
from hilsim.evse import ErrorCode, FaultSource, StopReason, events

log = logging.getLogger(__name__)

_SOURCE = FaultSource.WEB_ESTOP


class EmergencyStop:
    """The page's latch. `panel_engaged` says whether the physical one is engaged."""

    def __init__(self, charger: Charger, panel_engaged: Callable[[], bool]) -> None:
        self.charger = charger
        self.panel_engaged = panel_engaged
        self.engaged = False

    def holds(self, connector_id: int) -> bool:
        """Whether a fault on this connector may not be cleared from the page now."""
        state = self.charger.connectors[connector_id].machine.state
        return self.panel_engaged() or state.faulted_by(FaultSource.WEB_ESTOP)

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
            stop = events.Fault(ErrorCode.OTHER_ERROR, StopReason.EMERGENCY_STOP, _SOURCE)
            for cid in self.charger.connectors:
                self.charger.dispatch(cid, stop)
            return {"ok": True, "result": {"emergency_stop": "engaged", "changed": True}}
        log.warning("emergency stop released from the web page (%s)", who)
        self.engaged = False
        for cid, rt in self.charger.connectors.items():
            if rt.machine.state.faulted_by(_SOURCE):
                self.charger.dispatch(cid, events.ClearFault(_SOURCE))
        return {"ok": True, "result": {"emergency_stop": "released", "changed": True}}
