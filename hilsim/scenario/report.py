"""What a scenario run reports beyond its lines on stdout: a JUnit XML file for CI."""

from __future__ import annotations

import logging
from xml.etree import ElementTree

from hilsim.scenario.loading import Scenario
from hilsim.scenario.running import Outcome

log = logging.getLogger(__name__)


def junit_xml(results: list[tuple[Scenario, list[Outcome]]]) -> str:
    """A JUnit XML report: one testsuite per scenario, one testcase per step."""
    suites = ElementTree.Element("testsuites")
    for scenario, outcomes in results:
        suite = ElementTree.SubElement(
            suites,
            "testsuite",
            name=scenario.name,
            file=str(scenario.path),
            tests=str(len(outcomes)),
            failures=str(sum(o.status == "fail" for o in outcomes)),
            skipped=str(sum(o.status == "skip" for o in outcomes)),
            errors="0",
            time=f"{sum(o.seconds for o in outcomes):.3f}",
        )
        for outcome in outcomes:
            case = ElementTree.SubElement(
                suite,
                "testcase",
                classname=f"scenario.{scenario.path.stem}",
                name=f"step {outcome.step.number:02d}: {outcome.step.label}",
                time=f"{outcome.seconds:.3f}",
            )
            if outcome.status == "fail":
                failure = ElementTree.SubElement(case, "failure", message=outcome.message)
                failure.text = outcome.message
            elif outcome.status == "skip":
                ElementTree.SubElement(case, "skipped", message="an earlier step failed")
    ElementTree.indent(suites)
    return ElementTree.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
