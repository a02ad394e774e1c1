"""A register the CSMS can bill on: the meter's own counter, kept from ever going backwards.

A real energy register only rises. When it does not (the meter was reset, or swapped for another
one with a different count), sending the raw value would make the CSMS see negative consumption
inside a transaction. Instead the discontinuity is logged and an offset keeps the reported
register continuing from where it was; the energy of that one poll interval is not counted, which
is the only honest choice. Until the first discontinuity the offset is 0, so the reported register
*is* the meter's register.

An upward jump that no real load could cause in the time since the last good poll is a
discontinuity too (a swap to a meter with a higher count), not consumption.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

#: Upper bound for the power behind an energy step; above every DIN-rail meter's range.
PLAUSIBLE_POWER_W = 1_000_000.0
#: Decreases up to this are rounding in the meter's float, not a reset.
JITTER_WH = 0.5


class MonotonicRegister:
    """Feed it raw register values with their time; it hands back the value to report."""

    def __init__(self, name: str, *, floor_Wh: float = 0.0) -> None:
        """`floor_Wh`: the last register reported before a restart (the store keeps it)."""
        self.name = name
        self.floor_Wh = floor_Wh
        self.offset_Wh = 0.0
        self.discontinuities = 0
        self._raw: float | None = None
        self._at: float | None = None
        self._reported: float | None = None

    def update(self, raw_Wh: float, now: float) -> float:
        if self._raw is None or self._at is None or self._reported is None:
            if raw_Wh < self.floor_Wh - JITTER_WH:
                self.offset_Wh = self.floor_Wh - raw_Wh
                self.discontinuities += 1
                log.warning(
                    "%s: meter register %.1f Wh is below the %.1f Wh last reported (reset or "
                    "swapped while stopped); reporting continues from there with an offset of "
                    "%+.1f Wh",
                    self.name,
                    raw_Wh,
                    self.floor_Wh,
                    self.offset_Wh,
                )
            self._raw, self._at = raw_Wh, now
            self._reported = max(raw_Wh + self.offset_Wh, self.floor_Wh)
            return self._reported
        step = raw_Wh - self._raw
        hours = max(now - self._at, 0.0) / 3600.0
        candidate = raw_Wh + self.offset_Wh
        if step < 0 and -step <= JITTER_WH:
            candidate = self._reported  # the meter's float wobbled; hold
        elif step < 0 or step > PLAUSIBLE_POWER_W * hours + 1.0:
            kind = "went back" if step < 0 else "jumped"
            self.offset_Wh = self._reported - raw_Wh
            self.discontinuities += 1
            log.warning(
                "%s: meter register %s from %.1f to %.1f Wh (reset or swapped meter); "
                "reporting continues from %.1f Wh with an offset of %+.1f Wh",
                self.name,
                kind,
                self._raw,
                raw_Wh,
                self._reported,
                self.offset_Wh,
            )
            candidate = self._reported
        self._raw, self._at = raw_Wh, now
        self._reported = max(self._reported, candidate)
        return self._reported
