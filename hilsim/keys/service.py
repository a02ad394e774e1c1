"""The live values of the configuration keys (`ConfigurationKeys`) and ChangeConfiguration's rules.

The values live in memory; the caller persists them through `hilsim.store`, which keeps this
module free of I/O and trivially testable.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from hilsim.errors import HilsimError
from hilsim.keys.spec import Guard, KeySpec, Listener, Saver, Value
from hilsim.keys.table import SPECS, SPECS_BY_NAME, index_specs

if TYPE_CHECKING:
    from hilsim.config import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Change:
    """The outcome of a ChangeConfiguration: the status, and why when it is not Accepted."""

    status: ChangeStatus
    spec: KeySpec | None  # canonical; None for an unknown key
    value: Value | None  # the parsed value, when Accepted
    why: str = ""  # never shows a write-only value

    def answer(self) -> dict[str, object]:
        """The control socket's answer (`hilsim config set`): a refusal says why."""
        status = str(self.status)
        if self.status == ChangeStatus.accepted:
            return {"ok": True, "result": {"status": status}}
        error = f"{status}: {self.why}" if self.why else status
        return {"ok": False, "result": {"status": status}, "error": error}


class ChangeStatus(StrEnum):
    """ChangeConfiguration.conf status values, spelled as on the wire."""

    accepted = "Accepted"
    rejected = "Rejected"
    not_supported = "NotSupported"
    reboot_required = "RebootRequired"


class ConfigurationKeys:
    """The live values, in memory; persisted by the caller through Store.

    Timers (heartbeat, metering) subscribe here instead of polling, so a ChangeConfiguration takes
    effect immediately without the OCPP handler knowing who cares about which key.
    """

    def __init__(
        self,
        values: Mapping[str, Value] | None = None,
        *,
        specs: Sequence[KeySpec] = SPECS,
    ) -> None:
        self._specs = tuple(specs)
        self._by_name = SPECS_BY_NAME if self._specs == SPECS else index_specs(self._specs)
        self._values: dict[str, Value] = {spec.name: spec.default for spec in self._specs}
        self._listeners: list[Listener] = []
        self._guards: dict[str, list[Guard]] = {}
        self._keepers: dict[str, Callable[[Value], Awaitable[None]]] = {}
        for name, value in (values or {}).items():
            spec = self._spec(name)
            self._values[spec.name] = spec.check(value)

    @property
    def specs(self) -> tuple[KeySpec, ...]:
        """The keys this instance knows, in reporting order."""
        return self._specs

    def spec(self, name: str) -> KeySpec | None:
        """Like `lookup`, but for this instance's keys."""
        return self._by_name.get(name.casefold())

    def get(self, name: str) -> Value:
        """Current value of a key, by name or alias; KeyError for an unknown key."""
        return self._values[self._spec(name).name]

    def load(self, name: str, value: Value) -> None:
        """Set a value from where its owner keeps it (a secret's file): checked, not announced."""
        spec = self._spec(name)
        self._values[spec.name] = spec.check(value)

    def guard(self, name: str, check: Guard) -> None:
        """Let `check(value)` veto changes of a key: it returns why not, or None to allow.

        For rules no range can say (SecurityProfile may not go down, nor up without the
        certificates it needs).
        """
        self._guards.setdefault(self._spec(name).name, []).append(check)

    def keep_with(self, name: str, save: Callable[[Value], Awaitable[None]]) -> None:
        """Let the owner of a key persist it instead of the database (the AuthorizationKey's
        file): `set` calls ``save(value)`` before the value is applied."""
        self._keepers[self._spec(name).name] = save

    def validate(self, name: str, text: str) -> Change:
        """Would a ChangeConfiguration be accepted? Parsing, range, read-only and every guard;
        nothing changes. Logged without a write-only value."""
        spec = self.spec(name)
        if spec is None:
            logger.info("ChangeConfiguration %s: unknown key, NotSupported", name)
            return Change(ChangeStatus.not_supported, None, None, f"unknown key {name}")
        if spec.readonly:
            logger.info("ChangeConfiguration %s: read-only, Rejected", spec.name)
            return Change(ChangeStatus.rejected, spec, None, f"{spec.name} is read-only")
        try:
            value = spec.parse(text)
        except ValueError as exc:
            why = str(exc)
            if spec.writeonly:
                why = why.replace(repr(text), "(not shown)").replace(text, "(not shown)")
            logger.info("ChangeConfiguration rejected: %s", why)
            return Change(ChangeStatus.rejected, spec, None, why)
        for check in self._guards.get(spec.name, ()):
            if (why := check(value)) is not None:
                logger.info("ChangeConfiguration %s rejected: %s", spec.name, why)
                return Change(ChangeStatus.rejected, spec, None, why)
        return Change(ChangeStatus.accepted, spec, value)

    def apply(self, spec: KeySpec, value: Value) -> None:
        """Make a validated value live and tell the listeners."""
        self._values[spec.name] = value
        logger.info("ChangeConfiguration %s = %s", spec.name, spec.shown(value))
        self._notify(spec, value)

    def change(self, name: str, text: str) -> tuple[ChangeStatus, KeySpec | None, Value | None]:
        """Validate and apply in memory only, for values the caller persists itself or not at
        all (HeartbeatInterval from a BootNotification, test set-ups); a ChangeConfiguration
        goes through `set`, which persists first."""
        change = self.validate(name, text)
        if change.status == ChangeStatus.accepted:
            assert change.spec is not None and change.value is not None
            self.apply(change.spec, change.value)
        return change.status, change.spec, change.value

    async def set(self, name: str, text: str, save: Saver) -> Change:
        """ChangeConfiguration and `hilsim config set`, running or not: validate, persist, then
        apply and answer. A value that cannot be saved is Rejected and never in use, so the
        CSMS never hears an error about a value the charge point runs with, nor Accepted about
        one a reboot would lose. ``save`` persists a key whose owner did not `keep_with` it."""
        change = self.validate(name, text)
        if change.status != ChangeStatus.accepted:
            return change
        spec, value = change.spec, change.value
        assert spec is not None and value is not None
        keeper = self._keepers.get(spec.name)
        try:
            if keeper is not None:
                await keeper(value)
            elif spec.writeonly:
                raise HilsimError("no owner here to keep it")
            else:
                await save(spec, value)
        except (HilsimError, OSError) as exc:
            logger.error(
                "ChangeConfiguration %s = %s not saved (%s); Rejected, the value in use is "
                "unchanged", spec.name, spec.shown(value), exc,
            )  # fmt: skip
            return Change(ChangeStatus.rejected, spec, None, f"cannot save {spec.name}: {exc}")
        self.apply(spec, value)
        return change

    def report(
        self, names: Sequence[str] | None
    ) -> tuple[list[tuple[KeySpec, str | None]], list[str]]:
        """Answer a GetConfiguration: (known keys with formatted values, unknown names as given).

        Known keys come in request order, deduplicated by canonical name so asking for a key and
        its alias does not list the setting twice; no names means every key.

        OCPP 1.6 (5.8) lets a charge point limit the keys one request asks for to
        GetConfigurationMaxKeys, without an error for more: the request is valid (its schema
        has no bound), so it is answered for its first GetConfigurationMaxKeys names and the
        rest, neither known nor unknown in the answer, are logged.
        """
        if not names:
            return [(spec, self._reported(spec)) for spec in self._specs], []
        limit = self._max_keys()
        if limit is not None and len(names) > limit:
            logger.warning(
                "GetConfiguration asks for %d keys, more than GetConfigurationMaxKeys (%d): "
                "answering the first %d", len(names), limit, limit,
            )  # fmt: skip
            names = names[:limit]
        known: list[tuple[KeySpec, str | None]] = []
        unknown: list[str] = []
        seen: set[str] = set()
        for name in names:
            spec = self.spec(name)
            if spec is None:
                unknown.append(name)
            elif spec.name not in seen:
                seen.add(spec.name)
                known.append((spec, self._reported(spec)))
        return known, unknown

    def _max_keys(self) -> int | None:
        spec = self.spec("GetConfigurationMaxKeys")
        return None if spec is None else int(self._values[spec.name])

    def _reported(self, spec: KeySpec) -> str | None:
        """A write-only key is listed without its value (GetConfiguration's value is optional)."""
        return None if spec.writeonly else spec.format(self._values[spec.name])

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(spec, value)` after every accepted change; returns an unsubscribe."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            # Idempotent, so cleanup paths can call it without tracking whether they already did.
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def as_text(self) -> dict[str, str]:
        """Canonical name -> formatted value, the form the store persists (never a secret)."""
        return {
            spec.name: spec.format(self._values[spec.name])
            for spec in self._specs
            if not spec.writeonly
        }

    def _spec(self, name: str) -> KeySpec:
        spec = self.spec(name)
        if spec is None:
            raise KeyError(name)
        return spec

    def _notify(self, spec: KeySpec, value: Value) -> None:
        # A broken listener must not turn an applied change into an error reply to the CSMS, nor
        # keep the remaining listeners from hearing about it.
        for listener in tuple(self._listeners):
            try:
                listener(spec, value)
            except Exception:
                logger.exception("listener for %s failed", spec.name)


def installation_seed(settings: Settings) -> dict[str, Value]:
    """Key values that follow from the configuration file rather than from the CSMS.

    Seeded at every start, so the read-only ones (NumberOfConnectors) always say what is
    installed, and voltage_V follows the first connector until the CSMS changes it.
    """
    from hilsim.security import security_settings  # the [security] table is parsed there

    return {
        "voltage_V": settings.connectors[0].voltage_V,
        "NumberOfConnectors": len(settings.connectors),
        # Seeded, so a SecurityProfile the CSMS raised is kept, a new [security] profile not lost.
        "SecurityProfile": security_settings(settings).profile,
    }
