"""Where log records go: the journal with structured fields under systemd, plain stderr elsewhere.

Under systemd, `journalctl -u hilsim CONNECTOR=1` or `journalctl -u hilsim OCPP_ACTION=
StopTransaction` should find what happened to a connector or an OCPP message without grepping
text, so every record carries CONNECTOR, TRANSACTION and OCPP_ACTION fields when it concerns
one. A record may name them itself (``extra={"connector": 1, "transaction": 42, "ocpp_action":
"StopTransaction"}``); otherwise they are read from the message, whose wording hilsim keeps
regular for that reason ("C1 ...", "transaction 42", the OCPP action's own name).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from functools import partial
from typing import Any, TextIO

from hilsim.config import Settings
from hilsim.daemon.bindings import INSTALL_HINT, SystemdBindings
from hilsim.errors import ConfigError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
SYSLOG_IDENTIFIER = "hilsim"
TERMINAL_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

#: OCPP 1.6 action names (both directions, core and security whitepaper).
OCPP_ACTIONS = frozenset(
    {
        "Authorize", "BootNotification", "CancelReservation", "CertificateSigned",
        "ChangeAvailability", "ChangeConfiguration", "ClearCache", "ClearChargingProfile",
        "DataTransfer", "DeleteCertificate", "DiagnosticsStatusNotification",
        "ExtendedTriggerMessage", "FirmwareStatusNotification", "GetCompositeSchedule",
        "GetConfiguration", "GetDiagnostics", "GetInstalledCertificateIds", "GetLocalListVersion",
        "GetLog", "Heartbeat", "InstallCertificate", "LogStatusNotification", "MeterValues",
        "RemoteStartTransaction", "RemoteStopTransaction", "ReserveNow", "Reset",
        "SecurityEventNotification", "SendLocalList", "SetChargingProfile", "SignCertificate",
        "SignedFirmwareStatusNotification", "SignedUpdateFirmware", "StartTransaction",
        "StatusNotification", "StopTransaction", "TriggerMessage", "UnlockConnector",
        "UpdateFirmware",
    }
)  # fmt: skip

# Patterns, not compiled ones: `re` compiles and caches them with the first record that goes to
# the journal, and a run at a terminal, which never sends one, does not compile them at start.
_CONNECTOR = r"\bC(\d+)\b|\b[Cc]onnector(?:[ _]?[Ii]d)?\W{0,3}(\d+)"
_TRANSACTION = r"(?i)transaction(?:[ _]?id)?\W{0,3}(\d+)"
_WORD = r"[A-Za-z]+"
# journald's rule for field names: upper case letters, digits and '_', not starting with '_'.
_FIELD_NAME = r"[A-Z0-9][A-Z0-9_]*\Z"


# -- configuration ----------------------------------------------------------------------------


def configured_log_level(settings: Settings) -> str | None:
    """`[log] level` from the config file, upper-cased; None when the file does not set it."""
    table = settings.raw.get("log")
    if table is None:
        return None
    if not isinstance(table, Mapping):
        raise ConfigError(settings.source, "log", "expected a [log] table")
    for key in table:
        if key != "level":
            raise ConfigError(settings.source, f"log.{key}", "unknown key; known keys are: level")
    if "level" not in table:
        return None
    value = table["level"]
    if not isinstance(value, str) or value.upper() not in LOG_LEVELS:
        raise ConfigError(
            settings.source, "log.level", f"expected one of {', '.join(LOG_LEVELS)}, got {value!r}"
        )
    return value.upper()


# -- where we are -------------------------------------------------------------------------------


def stderr_is_journal(environ: Mapping[str, str], stream: TextIO) -> bool:
    """JOURNAL_STREAM names the journal's stream socket as "device:inode"; is it our stderr?

    This is the check systemd.exec(5) recommends: the variable alone may be inherited by a
    child whose stderr was redirected elsewhere.
    """
    text = environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in text.split(":"))
        info = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


def under_systemd(environ: Mapping[str, str], stream: TextIO) -> bool:
    """Started by systemd: stderr is the journal, or the service manager gave an invocation id."""
    return stderr_is_journal(environ, stream) or bool(environ.get("INVOCATION_ID"))


# -- journal fields -----------------------------------------------------------------------------


def journal_fields(record: logging.LogRecord) -> dict[str, str]:
    """CONNECTOR, TRANSACTION and OCPP_ACTION for one record (only those that apply).

    Explicit attributes (``connector``, ``transaction``, ``ocpp_action``) win over what the
    message says.
    """
    message = record.getMessage()
    fields: dict[str, str] = {}
    connector = getattr(record, "connector", None)
    if connector is None and (match := re.search(_CONNECTOR, message)):
        connector = match.group(1) or match.group(2)
    if connector is not None:
        fields["CONNECTOR"] = str(connector)
    transaction = getattr(record, "transaction", None)
    if transaction is None and (match := re.search(_TRANSACTION, message)):
        transaction = match.group(1)
    if transaction is not None:
        fields["TRANSACTION"] = str(transaction)
    action = getattr(record, "ocpp_action", None)
    if action is None:
        action = next((w for w in re.findall(_WORD, message) if w in OCPP_ACTIONS), None)
    if action is not None:
        fields["OCPP_ACTION"] = str(action)
    return fields


class JournalFields(logging.Filter):
    """Puts `journal_fields` on the record, where systemd's JournalHandler picks them up."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in journal_fields(record).items():
            setattr(record, name, value)
        return True


def journal_send(send: Any, message: str, /, **fields: Any) -> Any:
    """Pass only valid journal fields on.

    systemd-python's JournalHandler offers every attribute of the record (msg, args, levelname,
    ...) as a field; journald drops the lower-case ones anyway, and EXCEPTION_INFO is a tuple's
    repr that repeats what MESSAGE already holds.
    """
    kept = {
        name: value
        for name, value in fields.items()
        if re.match(_FIELD_NAME, name) and name != "EXCEPTION_INFO" and value is not None
    }
    return send(message, **kept)


def journal_handler(journal: Any, send: Any | None = None) -> logging.Handler:
    """systemd-python's JournalHandler, with our fields and a short MESSAGE (journald adds time,
    unit and pid; LOGGER= keeps the logger name as a field)."""
    handler: logging.Handler = journal.JournalHandler(
        sender_function=partial(journal_send, send or journal.send),
        SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER,
    )
    handler.addFilter(JournalFields())
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


class _PriorityPrefix(logging.Formatter):
    """`<N>message`: journald reads the syslog priority from the prefix on its stream socket."""

    def format(self, record: logging.LogRecord) -> str:
        priority = (
            7 if record.levelno <= logging.DEBUG
            else 6 if record.levelno <= logging.INFO
            else 4 if record.levelno <= logging.WARNING
            else 3 if record.levelno <= logging.ERROR
            else 2
        )  # fmt: skip
        text = super().format(record)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


# -- setting it up ------------------------------------------------------------------------------


def configure_logging(
    level: str,
    bindings: SystemdBindings,
    *,
    environ: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
    logger: logging.Logger | None = None,
    force: bool = False,
) -> str:
    """Give the root logger its one handler; returns which: "journal", "stream" or "stderr".

    Only the CLI calls this (modules only ever get a logger). Like `logging.basicConfig`, it
    leaves a logger that already has handlers alone unless forced (an embedding program, or
    pytest, has chosen already), and then only sets the level; it returns "kept".
    """
    environ = os.environ if environ is None else environ
    stream = sys.stderr if stream is None else stream
    logger = logging.getLogger() if logger is None else logger
    if logger.handlers and not force:
        logger.setLevel(level)
        return "kept"
    handler: logging.Handler
    if under_systemd(environ, stream) and bindings.journal is not None:
        handler, kind = journal_handler(bindings.journal), "journal"
    elif stderr_is_journal(environ, stream):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(_PriorityPrefix("%(name)s: %(message)s"))
        kind = "stream"
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(TERMINAL_FORMAT))
        kind = "stderr"
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    logger.addHandler(handler)
    logger.setLevel(level)
    return kind


def say_systemd_missing(
    log: logging.Logger, bindings: SystemdBindings, environ: Mapping[str, str] | None = None
) -> bool:
    """Say once, at start, that journal entries go without their fields; True when it said so.

    sd_notify needs no systemd-python (`hilsim.daemon.notify.DatagramNotify`), so nothing
    breaks: under systemd the log still reaches the journal, with priorities but without
    CONNECTOR, TRANSACTION and OCPP_ACTION (a note); elsewhere nothing is lost at all (debug).
    """
    if bindings.available:
        return False
    environ = os.environ if environ is None else environ
    supervised = bool(environ.get("NOTIFY_SOCKET") or environ.get("INVOCATION_ID"))
    log.log(
        logging.INFO if supervised else logging.DEBUG,
        "%s: journal entries go without the CONNECTOR, TRANSACTION and OCPP_ACTION fields "
        "(sd_notify is sent without it); %s",
        bindings.missing or "systemd-python is not installed",
        INSTALL_HINT,
    )
    return True
