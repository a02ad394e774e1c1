"""`hilsim scenario FILE`: a bench test written down as TOML steps, run against the built-in CSMS.

A tester repeats the same sequences (plug, tag, make the CSMS do something, check what the
charge point said) by hand; a scenario file writes one down so it runs the same way every time,
in CI too (``--junit``). The runner starts its own central system (:class:`CentralSystem` on
127.0.0.1, an ephemeral port) and its own charge point (the real :class:`Service`: the embedded
defaults, mock pins, database and control socket in a temporary directory), waits until the
charge point has booted, then runs the steps in order and stops at the first that fails.

The step vocabulary is in README "Scenario files". A bad file is refused before anything starts,
naming the file, the step, the key and what was expected, as configuration errors are (exit 2).

The file is read and checked by `hilsim.scenario.loading`, run by `hilsim.scenario.running`
(with the field matching of `hilsim.scenario.matching`) and reported as JUnit XML by
`hilsim.scenario.report`; every name they offer is importable from here.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from hilsim.scenario.loading import CTL_ACTIONS, DEFAULT_WITHIN_S, Scenario, Step, load_scenario
from hilsim.scenario.matching import StepFailed, field_at, mismatch, substitute
from hilsim.scenario.report import junit_xml
from hilsim.scenario.running import Outcome, Received, run_scenario

__all__ = [
    "CTL_ACTIONS",
    "DEFAULT_WITHIN_S",
    "Outcome",
    "Received",
    "Scenario",
    "Step",
    "StepFailed",
    "field_at",
    "junit_xml",
    "load_scenario",
    "main",
    "mismatch",
    "run_scenario",
    "substitute",
]

log = logging.getLogger(__name__)


def _say(line: str) -> None:
    print(line, flush=True)


async def main(paths: list[Path], junit: Path | None, trace: bool = False) -> int:
    """`hilsim scenario`: 0 when every step of every file passed, 1 when one failed.

    Every file is checked before the first runs: a bad one is ConfigError, exit 2.
    """
    scenarios = [load_scenario(path) for path in paths]
    results = []
    for scenario in scenarios:
        results.append((scenario, await run_scenario(scenario, _say, trace=trace)))
    passed = all(o.status == "pass" for _, outcomes in results for o in outcomes)
    steps = sum(len(outcomes) for _, outcomes in results)
    failed = sum(o.status == "fail" for _, outcomes in results for o in outcomes)
    print(f"{'PASSED' if passed else 'FAILED'}: {len(results)} scenario(s), {steps} step(s), "
          f"{failed} failed", flush=True)  # fmt: skip
    if junit is not None:
        await asyncio.to_thread(junit.write_text, junit_xml(results), encoding="utf-8")
    return 0 if passed else 1
