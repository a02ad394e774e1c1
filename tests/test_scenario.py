"""`hilsim scenario`: the shipped example scenarios pass; a failing step and a bad file say so.

The scenarios run for real: the runner starts the built-in CSMS and the charge point service
(mock pins, a temporary database and control socket); the command-line cases are `hilsim`
subprocesses, whose exit status and output are what CI sees.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from hilsim.errors import ConfigError
from hilsim.scenario import load_scenario, run_scenario

REPO = Path(__file__).parent.parent
EXAMPLES = sorted((REPO / "scenarios").glob("*.toml"))


async def hilsim(*argv: str, cwd: Path = REPO) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hilsim", *argv, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def test_the_five_examples_are_there() -> None:
    names = {path.stem for path in EXAMPLES}
    assert {
        "full-session",
        "remote-start-stop",
        "smart-charging",
        "offline-queue",
        "reset",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
async def test_every_example_scenario_passes(path: Path) -> None:
    lines: list[str] = []
    outcomes = await run_scenario(load_scenario(path), lines.append)
    assert [o.status for o in outcomes] == ["pass"] * len(outcomes), "\n".join(lines)
    assert len(lines) == 1 + len(outcomes)


FAILING = """
name = "fails on purpose"

[[step]]
ctl = "plug"
connector = 1

[[step]]
name = "nobody presented a tag"
expect = "StatusNotification"
where = { connectorId = 1, status = "Charging" }
within = 0.5

[[step]]
ctl = "unplug"
connector = 1
"""


async def test_a_failing_step_fails_the_run_and_the_report(tmp_path: Path) -> None:
    scenario = tmp_path / "fails.toml"
    scenario.write_text(FAILING)
    report = tmp_path / "report.xml"
    status, out, err = await hilsim("scenario", str(scenario), "--junit", str(report))
    assert status == 1, err
    lines = out.splitlines()
    assert lines[1].startswith("PASS   1  ctl plug 1")
    assert lines[2].startswith(
        "FAIL   2  nobody presented a tag: not received within 0.5 s; received since the last "
        'action: StatusNotification {"connectorId":1,"errorCode":"NoError","status":"Preparing"'
    )
    assert lines[3] == "SKIP   3  ctl unplug 1"
    assert lines[4] == "FAILED: 1 scenario(s), 3 step(s), 1 failed"
    suite = ElementTree.parse(report).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = suite.findall("testcase")
    assert cases[0].find("failure") is None and cases[0].find("skipped") is None
    failure = cases[1].find("failure")
    assert failure is not None and "not received within 0.5 s" in failure.get("message", "")
    assert cases[2].find("skipped") is not None


async def test_all_passing_exits_0_with_a_clean_report(tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    status, out, err = await hilsim(
        "scenario", "scenarios/remote-start-stop.toml", "--junit", str(report)
    )
    assert status == 0, out + err
    assert out.splitlines()[-1].startswith("PASSED: 1 scenario(s)")
    assert err == ""  # the charge point's warnings stay out of the way (ERROR by default)
    suite = ElementTree.parse(report).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "0" and suite.get("skipped") == "0"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[step]\n", "expected valid TOML"),
        ('name = "x"\n', "step: expected at least one [[step]] table"),
        ("[[step]]\nwait = 1\nctl = 'plug'\n", "step 1: expected exactly one of csms, ctl"),
        ("[[step]]\nctl = 'dance'\n", "step 1.ctl: expected one of clear, fault, plug"),
        ("[[step]]\nctl = 'tag'\nconnector = 1\n", "step 1.id_tag: ctl tag needs id_tag"),
        ("[[step]]\nctl = 'plug'\nconnector = 'one'\n", "step 1.connector: expected a connector"),
        ("[[step]]\nctl = 'plug'\nconnector = 1\nwithin = 3\n", "step 1.within: unknown key"),
        (
            "[[step]]\nwait = 1\n[[step]]\ncsms = 'Reset'\npayload = { type = 'Warm' }\n",
            "step 2.payload: Reset.req: type: 'Warm' is not one of: Hard, Soft",
        ),
        ("[[step]]\ncsms = 'Heartbeat'\n", "step 1.csms: 'Heartbeat' is not a CSMS-to-charge"),
        ("[[step]]\nexpect = 'Charging'\n", "step 1.expect: expected an OCPP 1.6 action"),
        ("[[step]]\nlink = 'sideways'\n", 'step 1.link: expected "down"'),
        ("[[step]]\nwait = -1\n", "step 1.wait: expected seconds, 0 to 3600"),
        ("colour = 'red'\n[[step]]\nwait = 1\n", "colour: unknown key"),
        ("ocpp_version = '2.0'\n[[step]]\nwait = 1\n", 'ocpp_version: expected "1.6" or "2.0.1"'),
        (
            "ocpp_version = '2.0.1'\n[[step]]\ncsms = 'RemoteStartTransaction'\n",
            "step 1.csms: 'RemoteStartTransaction' is not a CSMS-to-charge-point OCPP 2.0.1",
        ),
        (
            "ocpp_version = '2.0.1'\n[[step]]\nexpect = 'StartTransaction'\n",
            "step 1.expect: expected an OCPP 2.0.1 action",
        ),
        ("[[step]]\nexpect = 'TransactionEvent'\n", "step 1.expect: expected an OCPP 1.6 action"),
        (
            "ocpp_version = '2.0.1'\n[[step]]\ncsms = 'Reset'\npayload = { type = 'Hard' }\n",
            "step 1.payload: ResetRequest: type: 'Hard' is not one of: Immediate, OnIdle",
        ),
    ],
)
def test_a_bad_file_names_the_step_the_key_and_the_expectation(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_scenario(path)
    assert str(error.value).startswith(f"{path}: ")
    assert expected in str(error.value)


async def test_a_bad_file_exits_2_before_anything_runs(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[step]]\nctl = 'plug'\n")
    status, out, err = await hilsim("scenario", "scenarios/reset.toml", str(bad))
    assert (status, out) == (2, "")
    assert err == f"hilsim: {bad}: step 1.connector: ctl plug needs connector, got None\n"
    missing = await hilsim("scenario", str(tmp_path / "none.toml"))
    assert missing[0] == 2 and "file not found" in missing[2]


async def test_the_readme_examples_run_as_shown(tmp_path: Path) -> None:
    text = (REPO / "README.md").read_text()
    block = text.split("## Scenario files\n", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]
    assert commands
    for words in commands:
        assert words[:2] == ["hilsim", "scenario"]
        files = [str(path.relative_to(REPO)) for path in EXAMPLES if "scenarios/*.toml" in words]
        argv = [w for w in words[1:] if w != "scenarios/*.toml"] + files
        argv = [str(tmp_path / w) if w.endswith(".xml") else w for w in argv]
        status, out, err = await hilsim(*argv)
        assert status == 0, (words, out, err)


async def test_the_readme_scenario_runs_as_shown(tmp_path: Path) -> None:
    text = (REPO / "README.md").read_text()
    block = text.split("## Scenario files\n", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "readme.toml"
    path.write_text(block)
    lines: list[str] = []
    outcomes = await run_scenario(load_scenario(path), lines.append)
    assert [o.status for o in outcomes] == ["pass"] * 4, "\n".join(lines)
