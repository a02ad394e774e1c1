"""Nothing lost under chaos: a real `hilsim run` killed with SIGKILL and the CSMS restarted at
random points while sessions charge; the CSMS's ledger must then hold every transaction exactly
once, stopped once, with meter values that never go backwards.

The scenario lives in `bench.chaos` (``python -m bench --only chaos`` runs it as a benchmark).
Its random decisions come from a seed that is printed first; a failing run is repeated with
``HILSIM_CHAOS_SEED=<seed> pytest tests/test_chaos.py``. It takes about 10 to 30 s, so it runs
with the rest of the suite (``-m "not slow"`` leaves it out).
"""

from __future__ import annotations

import pytest

from bench.chaos import run_chaos

SESSIONS = 12


@pytest.mark.slow
@pytest.mark.timeout(240)  # CSMS outages add up; one run is typically 10 to 30 s
async def test_no_transaction_is_lost_or_duplicated_under_kills_and_csms_restarts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        with capsys.disabled():  # the seed and the figures belong on the terminal
            print(line)

    report = await run_chaos(SESSIONS, say=say)
    assert report.problems == [], "\n".join(lines)
    assert report.losses == 0
    assert report.sessions >= SESSIONS
    # The chaos did happen: the run that proves nothing is lost must have tried to lose things.
    assert sum(report.kills.values()) + report.csms_restarts > 0, "\n".join(lines)
    assert report.power_loss_stops <= report.sessions
