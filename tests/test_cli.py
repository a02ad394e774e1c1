"""The `hilsim` command line itself: every command is listed and parses, whichever is named.

The parser builds only the arguments of the command it is given (a cold start of `hilsim run`
should not pay for the rest); these tests make sure that never changes what a person sees.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hilsim.cli import _COMMANDS, _parser, main

COMMANDS = list(_COMMANDS)


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for name, (line, _) in _COMMANDS.items():
        assert name in text
        assert line.split()[0] in text


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_its_own_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: hilsim {command} [-h]")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["run", "--config", "x.toml"], {"command": "run", "config": Path("x.toml")}),
        (
            ["--log-level", "DEBUG", "ctl", "tag", "2", "run"],
            {"command": "ctl", "ctl_command": "tag", "connector": 2, "id_tag": "run"},
        ),
        (["config", "set", "meter", "5"], {"config_command": "set", "key": "meter"}),
        (["csms", "--port", "9100"], {"command": "csms", "port": 9100}),
        (["demo", "--quiet"], {"command": "demo", "quiet": True}),
    ],
)
def test_the_named_command_parses_whatever_words_follow(
    argv: list[str], expected: dict[str, object]
) -> None:
    args = vars(_parser(argv).parse_args(argv))
    assert {key: args[key] for key in expected} == expected


def test_an_unknown_command_lists_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["chrage"])
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert "invalid choice: 'chrage'" in error
    assert all(f"'{name}'" in error for name in COMMANDS)


def test_the_console_script_prints_its_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hilsim", "--version"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert done.stdout.startswith("hilsim ")


def test_a_command_name_later_on_the_line_is_just_a_word(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["ctl", "run"])
    assert stop.value.code == 2
    assert "argument ACTION: invalid choice: 'run'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--config", "x.toml", "ctl", "status"],
        ["ctl", "--config", "x.toml", "status"],
        ["ctl", "status", "--config", "x.toml"],
        ["--config", "x.toml", "config", "get"],
        ["config", "get", "MeterValueSampleInterval", "--config", "x.toml"],
        ["run", "--config", "x.toml"],
        ["--config", "x.toml", "run"],
        ["gpio", "--config", "x.toml", "test"],
        ["gpio", "test", "--config", "x.toml"],
        ["csms", "--config", "x.toml"],
        ["--config", "x.toml", "csms", "list"],
        ["meter", "--config", "x.toml", "probe"],
        ["meter", "probe", "--config", "x.toml"],
    ],
)
def test_config_goes_before_or_after_the_command(argv: list[str]) -> None:
    assert _parser(argv).parse_args(argv).config == Path("x.toml")


def test_run_without_a_config_file_says_how_to_make_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "hilsim.toml"
    assert main(["run", "--config", str(missing)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"hilsim: {missing}: file not found; copy deploy/hilsim.toml ")
    assert "--config FILE" in error
