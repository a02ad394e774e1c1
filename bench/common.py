"""What every benchmark returns: rows of one table, each figure beside its same-run baseline.

A benchmark module is `bench/bench_<name>.py` with ``def run(quick: bool = False) -> list[Row]``
(it may use asyncio.run inside). ``quick`` shortens it for the smoke test in the test suite.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Row:
    figure: str  # what was measured, e.g. "Heartbeat round trip CPU"
    value: float
    unit: str  # e.g. "µs", "ms", "MB", "%"
    baseline: float | None = None  # the same figure for the baseline, measured in the same run
    baseline_name: str = ""  # e.g. "bare websockets + json"
    goal: str = ""  # e.g. "≤ 1.5x", "< 45 MB"
    met: bool | None = None  # whether the goal was met, when there is one

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline
