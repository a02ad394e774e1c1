"""The `hilsim` command: run the service, drive it, run a CSMS, play the demo.

Every expected failure (bad config, service not running, CSMS unreachable) ends in one line on
stderr and a non-zero exit status, never a traceback: the person reading it is at a bench.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hilsim import __version__
from hilsim.errors import ControlError, HilsimError

# Nothing heavy at module level: main() pauses the cyclic GC before anything big loads (asyncio,
# the charger), and the console script imports this module before main() runs.
if TYPE_CHECKING:
    from hilsim.config import Settings
    from hilsim.daemon.bindings import SystemdBindings
    from hilsim.service import Service

log = logging.getLogger(__name__)


def _parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``argv`` naming a command, only that command's.

    Without one (``--help``, a mistyped command) every command is there to be listed; building
    all their parsers is a few ms of each start, and `hilsim run` is started a lot.
    """
    parser = argparse.ArgumentParser(
        prog="hilsim",
        description="An OCPP 1.6J charge point for hardware-in-the-loop testing; OCPP 2.0.1 "
        'with [charge_point] ocpp_version = "2.0.1" in the configuration file.',
    )
    parser.add_argument("--version", action="version", version=f"hilsim {__version__}")
    _with_config(parser)
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity on stderr (default INFO for run and csms, ERROR for scenario, "
        "WARNING otherwise)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    named = next((word for word in argv or () if word in _COMMANDS), None)
    for name, (text, add_arguments) in _COMMANDS.items():
        if named in (None, name):
            add_arguments(sub.add_parser(name, help=text))
    return parser


def _with_config(p: argparse.ArgumentParser) -> None:
    """``--config`` on this parser; every level has it, so it goes before or after a command.

    No default here (SUPPRESS): a level that is not given it must not overwrite what an outer
    level was given; :func:`_main` fills in the default once everything is parsed.
    """
    from hilsim.config import DEFAULT_CONFIG_PATH

    p.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help=f"configuration file (default {DEFAULT_CONFIG_PATH})",
    )


class _Actions(Protocol):
    """What the commands use of argparse's subparsers object (whose class is private)."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def _actions(parent: argparse.ArgumentParser, dest: str, *, required: bool = True) -> _Actions:
    """A command's ACTION subparsers; each action takes ``--config`` too."""
    actions = parent.add_subparsers(dest=dest, required=required, metavar="ACTION")
    add_parser = actions.add_parser

    def add_with_config(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        action = add_parser(name, **kwargs)
        _with_config(action)
        return action

    actions.add_parser = add_with_config  # type: ignore[method-assign]
    return actions


def _ctl_arguments(ctl: argparse.ArgumentParser) -> None:
    _with_config(ctl)
    ctl_sub = _actions(ctl, "ctl_command")
    ctl_sub.add_parser("status", help="print the charge point's state as JSON")
    for name, text in [
        ("plug", "plug an EV into connector N"),
        ("unplug", "unplug the EV from connector N"),
        ("clear", "clear the fault on connector N"),
    ]:
        ctl_sub.add_parser(name, help=text).add_argument("connector", type=int, metavar="N")
    tag = ctl_sub.add_parser("tag", help="present RFID tag IDTAG at connector N")
    tag.add_argument("connector", type=int, metavar="N")
    tag.add_argument("id_tag", metavar="IDTAG")
    fault = ctl_sub.add_parser("fault", help="raise a fault on connector N")
    fault.add_argument("connector", type=int, metavar="N")
    fault.add_argument(
        "error_code", nargs="?", default="OtherError", help="OCPP ChargePointErrorCode"
    )
    ctl_sub.add_parser("pins", help="print every configured GPIO pin and what it shows, as JSON")
    for name, text in [
        ("press", "press the button on mock input pin PIN (BCM number, e.g. 17 or GPIO17)"),
        ("release", "release the button on mock input pin PIN"),
    ]:
        ctl_sub.add_parser(name, help=text).add_argument("pin", metavar="PIN")


def _gpio_arguments(gpio: argparse.ArgumentParser) -> None:
    _with_config(gpio)
    gpio_sub = _actions(gpio, "gpio_command")
    gpio_test = gpio_sub.add_parser(
        "test",
        help="light every LED and relay in turn, then print each button press "
        "(stop `hilsim run` first: it holds the pins)",
    )
    gpio_test.add_argument(
        "--step", type=float, default=1.0, metavar="SECONDS", help="time per output (default 1)"
    )
    gpio_test.add_argument(
        "--listen",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to print button presses after the walk (default 60; 0: none)",
    )


def _csms_arguments(csms: argparse.ArgumentParser) -> None:
    from hilsim.csms.console import add_arguments

    _with_config(csms)
    # Without an ACTION `hilsim csms` runs the central system; send/list talk to a running one.
    add_arguments(csms, lambda: _actions(csms, "csms_command", required=False))


def _scenario_arguments(scenario: argparse.ArgumentParser) -> None:
    _with_config(scenario)  # accepted like everywhere; a scenario brings its own charge point
    scenario.description = (
        "Run scenario files (TOML steps: ctl actions, CSMS calls, waits, expectations; README "
        "'Scenario files') against the built-in CSMS and a charge point started for them. "
        "Exit 0: every step passed; 1: one failed; 2: a file is not a valid scenario."
    )
    scenario.add_argument("files", nargs="+", type=Path, metavar="FILE", help="scenario file")
    scenario.add_argument(
        "--junit", type=Path, metavar="FILE", help="also write a JUnit XML report there"
    )
    scenario.add_argument(
        "--trace", action="store_true", help="print every OCPP frame as well as the steps"
    )


def _demo_arguments(demo: argparse.ArgumentParser) -> None:
    _with_config(demo)
    demo.add_argument(
        "--quiet", action="store_true", help="print only the summary, not the OCPP trace"
    )
    demo.add_argument(
        "--ocpp",
        choices=("1.6", "2.0.1"),
        default="1.6",
        help="the OCPP version the charge point and the built-in CSMS speak (default 1.6)",
    )


def _config_arguments(config: argparse.ArgumentParser) -> None:
    _with_config(config)
    config_sub = _actions(config, "config_command")
    get = config_sub.add_parser("get", help="print a key (or all keys)")
    name = "a 1.6 key, or with ocpp_version 2.0.1 a Component.Variable (TxCtrlr.TxStartPoint)"
    get.add_argument("key", nargs="?", help=name)
    set_ = config_sub.add_parser(
        "set", help="change a key, as ChangeConfiguration (2.0.1: SetVariables) would"
    )
    set_.add_argument("key", help=name)
    set_.add_argument("value")


def _meter_arguments(meter: argparse.ArgumentParser) -> None:
    from hilsim.meter import probe  # no pymodbus import until a probe runs

    _with_config(meter)
    # probe has its own --config (no default: without one it probes a built-in kind)
    meter_sub = meter.add_subparsers(dest="meter_command", required=True, metavar="ACTION")
    probe.add_arguments(
        meter_sub.add_parser("probe", help="read a Modbus meter once and print what it said")
    )


#: Command -> (its line in ``hilsim --help``, what adds its arguments), in --help order.
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "run": ("run the charge point service", _with_config),
    "ctl": ("drive the running service (the same events as the physical buttons)", _ctl_arguments),
    "gpio": ("check the panel's wiring", _gpio_arguments),
    "csms": ("run the built-in CSMS (central system)", _csms_arguments),
    "demo": ("play a whole charging session against the built-in CSMS and exit", _demo_arguments),
    "scenario": ("run scenario files of steps and expectations, for CI", _scenario_arguments),
    "config": ("read or change an OCPP configuration key", _config_arguments),
    "meter": ("check an energy meter's wiring and settings", _meter_arguments),
}


def main(argv: Sequence[str] | None = None) -> int:
    # Start-up creates some 100 000 objects (modules, classes, the code dataclasses generate)
    # that live as long as the process; the cyclic GC would walk them over and over while they
    # load, ~13 ms of a cold start here and more on a Pi. So it is off until the command has
    # started (see _started) and back on whatever happens.
    gc.disable()
    try:
        return _main(argv)
    finally:
        gc.enable()


def _started(*, freeze: bool = False) -> None:
    """Start-up is over: the cyclic GC runs again.

    ``freeze`` (the service): what start-up loaded stays until exit, so it moves out of the
    GC's sight for good; every later full collection of a weeks-long run skips it.
    """
    if freeze and not gc.isenabled():
        gc.freeze()
    gc.enable()


def _main(argv: Sequence[str] | None) -> int:
    import asyncio

    if argv is None:
        argv = sys.argv[1:]
    args = _parser(argv).parse_args(argv)
    if not hasattr(args, "config"):  # given at no level: the default (_with_config says why)
        from hilsim.config import DEFAULT_CONFIG_PATH

        args.config = None if args.command == "meter" else DEFAULT_CONFIG_PATH
    # Under systemd: the journal with structured fields (hilsim.daemon.logs); else stderr.
    from hilsim.daemon.bindings import bindings_for
    from hilsim.daemon.logs import configure_logging

    bindings = bindings_for(os.environ)
    # A scenario's charge point warns as it should (CSMS gone...); its steps say what matters.
    default_level = {"run": "INFO", "csms": "INFO", "scenario": "ERROR"}.get(args.command)
    configure_logging(args.log_level or default_level or "WARNING", bindings)
    try:
        return int(asyncio.run(_dispatch(args, bindings)) or 0)
    except HilsimError as exc:
        print(f"hilsim: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        return 130


async def _dispatch(args: argparse.Namespace, bindings: SystemdBindings | None = None) -> int:
    from hilsim.config import load_settings

    if args.command == "run":
        return await _run(_service_settings(args.config), args.log_level, bindings)
    _started()  # the other commands are tools and CSMSs: nothing to keep out of the GC's way
    if args.command == "ctl":
        return await _ctl(load_settings(args.config), args)
    if args.command == "csms":
        return await _csms(args)
    if args.command == "demo":
        from hilsim.demo import play

        return await play(trace=not args.quiet, ocpp_version=args.ocpp)
    if args.command == "config":
        return await _config(load_settings(args.config), args)
    if args.command == "scenario":
        from hilsim import scenario

        return await scenario.main(args.files, args.junit, trace=args.trace)
    if args.command == "gpio":
        return await _gpio_test(load_settings(args.config), args)
    if args.command == "meter":
        from hilsim.meter import probe

        return await probe.run(args)
    raise AssertionError(args.command)


def _service_settings(path: Path) -> Settings:
    """`hilsim run`'s settings; a missing file says how to make one and how to name it."""
    from hilsim.config import load_settings
    from hilsim.errors import ConfigError

    if not path.exists() and not path.is_symlink():
        raise ConfigError(
            str(path),
            None,
            "file not found; copy deploy/hilsim.toml from the hilsim sources there and edit it "
            "(sudo deploy/install.sh does that on a Pi), or name another file with "
            "--config FILE (before or after `run`)",
        )
    return load_settings(path)


async def _run(
    settings: Settings, log_level: str | None = None, bindings: SystemdBindings | None = None
) -> int:
    import asyncio

    from hilsim.daemon.supervision import Supervision
    from hilsim.service import Service

    # Says once here when systemd-python is missing; `--log-level` beats `[log] level`.
    supervision = Supervision.from_environment(bindings, log_level_override=log_level)
    supervision.apply_log_level(settings)
    service = Service(settings, supervision=supervision)
    started = asyncio.get_running_loop().create_task(_when_ready(service))
    try:
        await service.run(handle_signals=True)
    finally:
        started.cancel()
    if service.restart_requested:  # Reset Hard, after a clean shutdown
        from hilsim.restart import restart_process

        restart_process(service.boot_reason_after_restart)
    return 0


async def _when_ready(service: Service) -> None:
    await service.ready.wait()
    _started(freeze=True)


async def _ctl(settings: Settings, args: argparse.Namespace) -> int:
    from hilsim.control import request

    payload: dict[str, Any] = {"cmd": args.ctl_command}
    for name in ("connector", "id_tag", "error_code", "pin"):
        if hasattr(args, name):
            payload[name] = getattr(args, name)
    answer = await request(settings.control.socket, payload)
    return _print_answer(answer)


async def _gpio_test(settings: Settings, args: argparse.Namespace) -> int:
    from hilsim.panel import load_panel_settings, open_pin_factory
    from hilsim.panel.selftest import self_test

    panel = load_panel_settings(settings)
    if panel.empty:
        return await self_test(panel, None, _say)
    factory, backend = open_pin_factory(panel.backend, panel.source)
    try:
        return await self_test(
            panel, factory, _say, backend=backend, step_s=args.step, listen_s=args.listen
        )
    finally:
        factory.close()


def _say(line: str) -> None:
    print(line, flush=True)


def _print_answer(answer: dict[str, Any]) -> int:
    if not answer.get("ok"):
        print(f"hilsim: {answer.get('error', 'refused')}", file=sys.stderr)
        return 1
    print(json.dumps(answer.get("result"), indent=2))
    return 0


async def _csms(args: argparse.Namespace) -> int:
    if args.csms_command is not None:
        return await _csms_console(args)
    from hilsim.config import embedded_defaults, load_settings
    from hilsim.csms import serve

    settings = load_settings(args.config) if args.config.exists() else embedded_defaults()
    host = args.host or settings.csms.host
    port = args.port if args.port is not None else settings.csms.port
    id_tags = args.id_tags or list(settings.csms.id_tags)
    from hilsim.csms.server import security_options

    ssl_context, passwords = security_options(
        args.tls_cert, args.tls_key, args.client_ca, args.passwords or []
    )
    await serve(
        host,
        port,
        id_tags,
        trace=lambda line: print(line, flush=True),
        ssl_context=ssl_context,
        passwords=passwords,
        console_socket=args.socket,
    )
    return 0


async def _csms_console(args: argparse.Namespace) -> int:
    """`hilsim csms send|list`: one request to the running CSMS's socket, its answer as JSON.

    Exit 0 on a CALLRESULT, 1 on a CALLERROR, a timeout or no such charge point, 2 on input
    that is not a valid CALL (nothing is sent). Only the running CSMS knows the charge point's
    OCPP version, so it parses and checks the words; an action of one version only is checked
    here already.
    """
    from hilsim.control import request
    from hilsim.csms.console import action_named, checked, parse_payload, versions_of

    if args.csms_command == "list":
        return _print_answer(await request(args.socket, {"cmd": "list"}, service="hilsim csms"))
    action = action_named(args.action, None)  # of either version: the CSMS knows which
    sent: dict[str, Any] = {"arguments": args.arguments}
    if len(versions := versions_of(action)) == 1:
        payload = parse_payload(action, args.arguments, versions[0])
        sent = {"payload": checked(action, payload, versions[0])}
    answer = await request(
        args.socket,
        {
            "cmd": "send",
            "charge_point": args.charge_point,
            "action": action,
            **sent,
            "timeout": args.timeout,
        },
        timeout=args.timeout + 5,
        service="hilsim csms",
    )
    if answer.get("kind") == "callerror":
        print(json.dumps(answer.get("result"), indent=2))
    if not answer.get("ok"):
        print(f"hilsim: {answer.get('error', 'refused')}", file=sys.stderr)
        return 2 if answer.get("kind") == "invalid" else 1
    return _print_answer(answer)


async def _config(settings: Settings, args: argparse.Namespace) -> int:
    """Through the running service when there is one (takes effect at once), else the database."""
    from hilsim.control import request

    if args.config_command == "get":
        payload = {"cmd": "config-get", "key": args.key}
    else:
        payload = {"cmd": "config-set", "key": args.key, "value": args.value}
    try:
        answer = await request(settings.control.socket, payload)
    except ControlError:
        answer = await _config_offline(settings, payload)
    return _print_answer(answer)


async def _config_offline(settings: Settings, payload: dict[str, Any]) -> dict[str, Any]:
    from hilsim.configuration import Configuration
    from hilsim.keys import installation_seed
    from hilsim.security import ConnectionSecurity, key_file_for, security_settings
    from hilsim.service import Service
    from hilsim.store import Store
    from hilsim.stored_keys import load_configuration
    from hilsim.tasks import TaskSet

    # The database's lock: a service running without an answering socket (starting, or another
    # config's socket) refuses this with exit 2 instead of being written behind its back.
    holder = f"hilsim config --config {settings.source}"
    async with await Store.open(settings.storage.database, holder=holder) as store:
        keys = await load_configuration(store, seed=installation_seed(settings))
        # The running service's guards (SecurityProfile) and the AuthorizationKey's file: a
        # value Accepted here is one the service starts with.
        ConnectionSecurity(
            security_settings(settings), keys, store, settings.charge_point.id,
            key_file_for(settings),
        )  # fmt: skip
        configuration = Configuration(keys, store, TaskSet("config"))
        model = None
        if settings.charge_point.ocpp_version == "2.0.1":  # its variables, as the service has them
            from hilsim.device_model import DeviceModel
            from hilsim.ocpp201.device_model_setup import catalogue_for

            stored = await store.variables.load_variables()
            model = DeviceModel(catalogue_for(settings), configuration, store.variables, stored)
        try:
            if payload["cmd"] == "config-get":
                return Service.config_get(keys, payload["key"], model)
            return await Service.config_set(configuration, payload["key"], payload["value"], model)
        finally:
            if model is not None:
                model.close()
