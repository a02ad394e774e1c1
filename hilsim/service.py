"""Wiring: build the store, keys, charger, CSMS link and control socket, and run them together.

Everything that lives for the whole process is started here under one TaskGroup, so a crash in
any part ends the service visibly (systemd restarts it) instead of leaving a half-alive charger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from hilsim.charger import Charger
from hilsim.config import Settings, load_settings
from hilsim.control import ControlServer, check_socket_path
from hilsim.daemon.supervision import Supervision
from hilsim.errors import ConfigError
from hilsim.evse import ErrorCode, StopReason, effects, events
from hilsim.firmware import LogRing
from hilsim.keys import ConfigurationKeys, installation_seed
from hilsim.meter import meter_tables
from hilsim.ocpp.session import CsmsLink
from hilsim.ocpp.transport import Backoff
from hilsim.ocpp.wire import FrameListener
from hilsim.panel.config import PANEL_COMMANDS, load_panel_settings
from hilsim.store import Store
from hilsim.stored_keys import load_configuration
from hilsim.wiring import build_charge_point, identity_of

if TYPE_CHECKING:  # types only: gpiozero and the web server load when configured
    from gpiozero import Factory

    from hilsim.configuration import Configuration
    from hilsim.device_model import DeviceModel
    from hilsim.meter.base import MeterSource
    from hilsim.meter.config import MeterSettings
    from hilsim.panel.panel import Panel
    from hilsim.web.config import WebSettings
    from hilsim.web.server import WebServer

log = logging.getLogger(__name__)


class Service:
    """The running charge point. `run()` returns when `stop()` is called (or a signal arrives)."""

    def __init__(
        self,
        settings: Settings,
        *,
        frame_listeners: Sequence[FrameListener] = (),
        backoff: Backoff | None = None,
        response_timeout: float = 30.0,
        supervision: Supervision | None = None,
        pin_factory: Factory | None = None,
    ) -> None:
        """`pin_factory`: the gpiozero factory for the panel; None opens `[gpio] backend`'s."""
        self.settings = settings
        self.pin_factory = pin_factory
        self.panel: Panel | None = None
        self.web: WebServer | None = None  # the demo page, when [web] listen is set
        self.supervision = supervision or Supervision()
        self.frame_listeners = list(frame_listeners)
        self.backoff = backoff
        self.response_timeout = response_timeout
        self.store: Store | None = None
        self.keys: ConfigurationKeys | None = None
        self.charger: Charger | None = None
        self.link: CsmsLink | None = None
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._signalled: set[asyncio.Task[None]] = set()
        self.stop_reason = StopReason.LOCAL
        #: Set by a Hard reset: `hilsim run` starts the program afresh once `run()` returned.
        self.restart_requested = False
        self.boot_reason_after_restart = "RemoteReset"
        #: the recent log lines a GetDiagnostics archive holds
        self.log_ring = LogRing()

    def stop(self, reason: StopReason = StopReason.LOCAL) -> None:
        self.stop_reason = reason
        self._stop.set()

    def restart(self, boot_reason: str = "RemoteReset") -> None:
        """Reset Hard: stop like a shutdown (reason HardReset), then `hilsim.restart` re-execs;
        ``boot_reason``: what the new run's 2.0.1 BootNotification says (FirmwareUpdate after
        an installed firmware)."""
        self.restart_requested = True
        self.boot_reason_after_restart = boot_reason
        self.stop(StopReason.HARD_RESET)

    async def run(self, *, handle_signals: bool = False) -> None:
        settings = self.settings
        panel_settings = load_panel_settings(settings)  # a wiring typo fails before any IO
        meter_config = _meter_settings(settings)  # so does a meter's
        web_settings = _web_settings(settings)  # and the demo page's
        socket, database = settings.control.socket, settings.storage.database
        check_socket_path(socket, settings.source, database=database)  # never the db's files
        # The database's lock before anything reads it: a second hilsim on it exits 2 here,
        # before the power-loss recovery below could end the first one's live transactions.
        holder = f"hilsim run --config {settings.source}"
        async with await Store.open(database, holder=holder) as store:
            self.store = store
            keys = await load_configuration(store, seed=installation_seed(settings))
            overridden = "voltage_V" in await store.changed_keys()
            registers = await store.meter_registers()
            meters: dict[int, MeterSource] = {}
            if meter_config:
                from hilsim.meter.config import build_meters

                meters = build_meters(meter_config, registers=registers)
            parts = await build_charge_point(
                settings, store, keys,
                meters=meters, registers=registers, voltage_overridden=overridden,
                restart=self.restart, log_ring=self.log_ring, backoff=self.backoff,
                frame_listeners=self.frame_listeners, response_timeout=self.response_timeout,
            )  # fmt: skip
            charger, link, firmware = parts.charger, parts.link, parts.firmware
            await charger.outbox.recover()  # transactions a power cut left open end as PowerLoss
            self.keys, self.charger, self.link = keys, charger, link
            charger.status_listeners.append(lambda *_: self._publish_status())
            charger.link_listeners.append(lambda _: self._publish_status())
            # Pins are claimed before anything connects: a busy or missing pin is a PanelError.
            from hilsim.panel.panel import Panel  # gpiozero loads only now (cold start)

            panel = Panel(panel_settings, charger, asyncio.get_running_loop(), self.pin_factory)
            panel.open()
            self.panel = panel
            if handle_signals:
                self._install_signal_handlers()
            logging.getLogger().addHandler(self.log_ring)  # for GetDiagnostics
            try:
                await charger.start()  # meters: a dead one is a health state, never an error
                if web_settings is not None and web_settings.enabled:
                    from hilsim.web.server import WebServer  # only with [web] listen set

                    self.web = WebServer(web_settings, charger, self.command, panel)
                async with (
                    ControlServer(settings.control.socket, self.command, settings.source),
                    self.web or contextlib.nullcontext(),
                    asyncio.TaskGroup() as tasks,
                ):
                    link_task = tasks.create_task(link.run(charger), name="csms-link")
                    outbox_task = tasks.create_task(charger.outbox.run(), name="outbox")
                    self.ready.set()
                    # READY=1 only now: config loaded, database open, control socket listening.
                    notifier = self.supervision.notifier
                    notifier.ready(self.status_text() if notifier.active else None)
                    supervisor = tasks.create_task(
                        self.supervision.run(self.status_text), name="systemd"
                    )
                    log.info(
                        "charge point %s with %d connector(s), CSMS %s",
                        settings.charge_point.id,
                        len(settings.connectors),
                        settings.charge_point.endpoint,
                    )
                    await self._stop.wait()
                    supervisor.cancel()  # no more watchdog pings: systemd now times the stop
                    if self.restart_requested:  # the same process comes back: not a stop
                        self.supervision.notifier.reloading("hard reset: restarting")
                    else:
                        self.supervision.notifier.stopping(
                            f"stopping: ending transactions ({self.stop_reason})"
                        )
                    log.info("stopping: ending transactions (%s)", self.stop_reason)
                    await charger.end_all_transactions(self.stop_reason)
                    outbox_task.cancel()
                    link_task.cancel()
            finally:
                logging.getLogger().removeHandler(self.log_ring)
                panel.close()  # LEDs dark, relays open
                await firmware.close()
                await charger.close()
                if handle_signals:
                    self._remove_signal_handlers()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._terminate)
        loop.add_signal_handler(signal.SIGINT, self.stop)  # Ctrl-C at a terminal: Local
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)

    def _terminate(self) -> None:
        """SIGTERM: `systemctl stop` (Local) or the system going down (Reboot); ask which."""
        if self._stop.is_set() or self._signalled:
            return
        task = asyncio.get_running_loop().create_task(self._stop_for_sigterm())
        self._signalled.add(task)

    async def _stop_for_sigterm(self) -> None:
        self.stop(await self.supervision.shutdown.stop_reason())

    # -- systemd: status line and reload -------------------------------------------------------

    def status_text(self) -> str:
        """The line `systemctl status` shows (see hilsim.daemon.status)."""
        from hilsim.daemon.status import status_line

        return status_line(self.charger.snapshot()) if self.charger else "starting"

    def _publish_status(self) -> None:
        if self.supervision.notifier.active:
            self.supervision.notifier.status(self.status_text())

    def reload(self) -> None:
        """SIGHUP: apply what is safe from the config file now, log what needs a restart.

        The rule is in hilsim.daemon.reload; a file that does not parse changes nothing.
        """
        from hilsim.daemon.reload import describe, plan_reload

        notifier = self.supervision.notifier
        notifier.reloading(f"reloading {self.settings.source}")
        try:
            plan = plan_reload(self.settings, load_settings(self.settings.source))
        except ConfigError as exc:
            log.error("reload failed, running configuration kept: %s", exc)
        else:
            link = self.link
            if link is not None:
                cp = plan.settings.charge_point
                link.endpoint, link.charge_point_id = cp.endpoint, cp.id
                firmware = self.charger.firmware if self.charger else None
                identity = identity_of(plan.settings)
                link.identity = firmware.identity(identity) if firmware else identity
            self.settings = plan.settings
            self.supervision.apply_log_level(plan.settings)
            for level, line in describe(plan):
                log.log(level, "%s", line)
        finally:
            notifier.ready(self.status_text())

    # -- the control socket's commands ---------------------------------------------------------

    async def command(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one `hilsim ctl` request. Button-like commands inject the button's event."""
        charger, keys = self.charger, self.keys
        assert charger is not None and keys is not None
        cmd = request["cmd"]
        if cmd == "status":
            return {"ok": True, "result": charger.snapshot()}
        if cmd in _BUTTON_EVENTS:
            try:
                connector_id = int(request.get("connector", 0))
                event = _BUTTON_EVENTS[cmd](request)
            except (TypeError, ValueError) as exc:
                return {"ok": False, "error": f"{cmd}: {exc}"}
            if connector_id not in charger.connectors:
                known = ", ".join(str(c) for c in charger.connectors)
                return {"ok": False, "error": f"no connector {connector_id} (have {known})"}
            outcome = charger.dispatch(connector_id, event)
            if outcome.refused:
                return {"ok": False, "error": f"connector {connector_id}: {outcome.refused}"}
            result: dict[str, Any] = {"status": str(outcome.state.status)}
            if any(isinstance(effect, effects.SendAuthorize) for effect in outcome.effects):
                result.update(await self._verdict(connector_id))
            return {"ok": True, "result": result}
        if cmd in PANEL_COMMANDS and self.panel is not None:
            return await self.panel.command(request)
        if cmd == "config-get":
            return self.config_get(keys, request.get("key"), charger.device_model)
        if cmd == "debug-block-loop":
            return self._block_loop(request)
        if cmd == "config-set":
            key, value = str(request.get("key", "")), str(request.get("value", ""))
            return await self.config_set(charger.configuration, key, value, charger.device_model)
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    async def _verdict(self, connector_id: int, timeout: float = 8.0) -> dict[str, Any]:
        """`ctl tag`'s answer: the connector's status once the tag was decided, and the decision
        (the CSMS's Accepted/Invalid/Blocked/Expired/ConcurrentTx, or the local one offline).

        Within ``timeout`` (the ctl request's own is 10 s); a CSMS slower than that leaves the
        decision ``null``, and `ctl status` shows it later as last_authorization.
        """
        charger = self.charger
        assert charger is not None
        decided: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def listener(cid: int, decision: dict[str, Any]) -> None:
            if cid == connector_id and not decided.done():
                decided.set_result(decision)

        charger.authorizer.decision_listeners.append(listener)  # before any await: none is missed
        try:
            decision = await asyncio.wait_for(decided, timeout)
        except TimeoutError:
            return {"authorization": None}
        finally:
            charger.authorizer.decision_listeners.remove(listener)
        state = charger.connectors[connector_id].machine.state
        return {"status": str(state.status), "authorization": decision}

    def _block_loop(self, request: dict[str, Any]) -> dict[str, Any]:
        """Hold the event loop still on purpose (not in `hilsim ctl`'s help).

        It shows on a real Pi, and in the tests, that a hung loop stops the watchdog pings and
        systemd restarts the service. Bounded, so a typo cannot hang the charger for good.
        """
        try:
            seconds = float(request.get("seconds", 0))
        except (TypeError, ValueError):
            seconds = math.nan
        if not 0 < seconds <= 600:
            return {"ok": False, "error": "debug-block-loop: seconds must be > 0 and <= 600"}
        log.warning("debug: blocking the event loop for %g s; watchdog pings stop", seconds)
        self.supervision.notifier.status(f"debug: event loop blocked for {seconds:g} s")
        started = time.monotonic()
        time.sleep(seconds)
        blocked = time.monotonic() - started
        log.warning("debug: event loop running again after %.3f s", blocked)
        self.supervision.notifier.status(self.status_text(), force=True)
        return {"ok": True, "result": {"blocked_s": round(blocked, 3)}}

    @staticmethod
    def config_get(
        keys: ConfigurationKeys, key: object, model: DeviceModel | None = None
    ) -> dict[str, Any]:
        """A 1.6 key, or with a 2.0.1 device model ``model`` a `Component.Variable` too; no key:
        every key, then (2.0.1) every variable that has no key."""
        if is_variable_name(key):
            if model is None:
                return {"ok": False, "error": _NO_VARIABLES.format(key)}
            from hilsim.device_model.operator import get_variable

            return get_variable(model, str(key))
        names = [str(key)] if key else None
        known, unknown = keys.report(names)
        if unknown:
            return {"ok": False, "error": f"unknown configuration key {unknown[0]}"}
        result = {spec.name: text for spec, text in known}
        if model is not None and not key:
            from hilsim.device_model.operator import readable

            result.update(readable(model))
        return {"ok": True, "result": result}

    @staticmethod
    async def config_set(
        configuration: Configuration, key: str, value: str, model: DeviceModel | None = None
    ) -> dict[str, Any]:
        """As ChangeConfiguration would (a 1.6 key), or as SetVariables (2.0.1's
        `Component.Variable`), checked, committed and applied either way."""
        if is_variable_name(key):
            if model is None:
                return {"ok": False, "error": _NO_VARIABLES.format(key)}
            from hilsim.device_model.operator import set_variable

            return await set_variable(model, key, value)
        return (await configuration.configure(key, value)).answer()


#: A `Component.Variable` asked of a 1.6 charge point.
_NO_VARIABLES = (
    "unknown configuration key {} (Component.Variable names are OCPP 2.0.1's: they need "
    '[charge_point] ocpp_version = "2.0.1")'
)


def is_variable_name(key: object) -> bool:
    """A 2.0.1 `Component.Variable` (a 1.6 key never has a dot)."""
    return isinstance(key, str) and "." in key


def _fault(request: dict[str, Any]) -> events.Fault:
    code = request.get("error_code") or ErrorCode.OTHER_ERROR
    if code not in ErrorCode.__members__.values() or code == ErrorCode.NO_ERROR:
        valid = ", ".join(c for c in ErrorCode if c != ErrorCode.NO_ERROR)
        raise ValueError(f"{code!r} is not a ChargePointErrorCode; expected one of: {valid}")
    return events.Fault(ErrorCode(code))


_BUTTON_EVENTS: dict[str, Callable[[dict[str, Any]], events.Event]] = {
    "plug": lambda r: events.PlugIn(),
    "unplug": lambda r: events.Unplug(),
    "tag": lambda r: events.PresentTag(_id_tag(r.get("id_tag"))),
    "fault": _fault,
    "clear": lambda r: events.ClearFault(),
}


def _id_tag(value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 20:
        raise ValueError("an idTag is 1 to 20 characters")
    return value


def _meter_settings(settings: Settings) -> dict[int, MeterSettings]:
    """The Modbus meters; their parser and register maps load only when a table names one."""
    if next(meter_tables(settings), None) is None:
        return {}
    from hilsim.meter.config import meter_settings

    return meter_settings(settings)


def _web_settings(settings: Settings) -> WebSettings | None:
    """The demo page's settings; without a [web] table it is off and its parser never loads."""
    if "web" not in settings.raw:
        return None
    from hilsim.web.config import load_web_settings

    return load_web_settings(settings)
