"""Chaos as a benchmark: the scenario of tests/test_chaos.py, its figures as rows.

Sessions charge on a real ``hilsim run`` that is killed with SIGKILL at random points while the
built-in CSMS is restarted at random (see `bench.chaos`); the ledger is then checked. The figures
are what happened and what it cost; "losses" must be 0. ``HILSIM_CHAOS_SEED`` repeats a run.
"""

from __future__ import annotations

import asyncio
import sys

from bench.chaos import run_chaos
from bench.common import Row


def run(quick: bool = False) -> list[Row]:
    sessions = 6 if quick else 12
    report = asyncio.run(run_chaos(sessions, say=lambda line: print(line, file=sys.stderr)))
    rows = [
        Row(f"chaos: sessions (seed {report.seed})", report.sessions, ""),
        Row("chaos: charge point killed (SIGKILL)", sum(report.kills.values()), ""),
        Row("chaos: CSMS restarts", report.csms_restarts, ""),
        Row("chaos: reconnects", report.reconnects, ""),
        Row("chaos: messages from the charge point", report.messages, ""),
        Row("chaos: transaction messages", report.transaction_messages, ""),
        Row(
            "chaos: messages sent again after a kill",
            report.repeated_starts + report.repeated_stops + report.repeated_samples,
            "",
        ),
        Row("chaos: transactions stopped with PowerLoss", report.power_loss_stops, ""),
        Row("chaos: run time", report.seconds, "s"),
        Row("chaos: losses", report.losses, "", goal="0", met=report.losses == 0),
        Row(
            "chaos: ledger problems",
            len(report.problems),
            "",
            goal="0",
            met=not report.problems,
        ),
    ]
    return rows
