"""The OCPP 2.0.1 device model of the charge point: GetVariables, SetVariables, the base reports,
and news of variables that changed for another reason than a SetVariables (for NotifyEvent).

One owner per value: a variable that is a 1.6 configuration key is read from the live keys and
written through `Configuration.configure` (validated -> persisted -> applied, with the same
guards as ChangeConfiguration: SecurityProfile only upwards, AuthorizationKey kept in its file),
so the 1.6 services keep working unchanged and nothing is stored twice. A 2.0.1-only variable
lives in the device_variable table (`hilsim.store.variables`); runtime values (AvailabilityState,
ClockCtrlr.DateTime) are read when asked from callables given at construction, so this module
imports neither the charger nor the OCPP layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from hilsim.device_model.report import Limits, ReportBase, in_report, report_data
from hilsim.device_model.variables import Attribute, Component, Mutability, Variable
from hilsim.errors import HilsimError
from hilsim.keys import Change, ChangeStatus, ConfigurationKeys, KeySpec, Value
from hilsim.store import VariableAddress

log = logging.getLogger(__name__)

#: A runtime value for a component (None: the variable's default).
LiveSource = Callable[[Component], "str | None"]


class ConfigurationPort(Protocol):
    """What the device model needs of `hilsim.configuration.Configuration`."""

    keys: ConfigurationKeys

    async def configure(self, key: str, value: str) -> Change: ...


class VariableStore(Protocol):
    """What the device model needs of `hilsim.store.variables.VariableRepository`."""

    async def load_variables(self) -> dict[VariableAddress, str]: ...

    async def save_variable(self, address: VariableAddress, value: str) -> None: ...


class GetStatus(StrEnum):
    accepted = "Accepted"
    rejected = "Rejected"
    unknown_component = "UnknownComponent"
    unknown_variable = "UnknownVariable"
    not_supported = "NotSupportedAttributeType"


class SetStatus(StrEnum):
    accepted = "Accepted"
    rejected = "Rejected"
    unknown_component = "UnknownComponent"
    unknown_variable = "UnknownVariable"
    not_supported = "NotSupportedAttributeType"
    reboot_required = "RebootRequired"


@dataclass(frozen=True, slots=True)
class Outcome:
    """A get's or set's answer: the status, the value (get), and why when not Accepted."""

    status: str
    value: str | None = None
    reason: str | None = None  # statusInfo.reasonCode, at most 20 characters
    info: str = ""  # statusInfo.additionalInfo

    def status_info(self) -> dict[str, str] | None:
        if self.reason is None:
            return None
        info = {"reasonCode": self.reason[:20]}
        if self.info:
            info["additionalInfo"] = self.info[:512]
        return info


@dataclass(frozen=True, slots=True)
class VariableChange:
    """An attribute's new value; ``by_csms``: a SetVariables made it (no NotifyEvent then)."""

    variable: Variable
    attribute: Attribute
    value: str | None  # None: a write-only value
    by_csms: bool


Listener = Callable[[VariableChange], None]


def _names(
    variable: Variable, component: Component, name: str | None, instance: str | None
) -> bool:
    """Whether a GetReport componentVariable names this variable (absent parts: any)."""
    mine = variable.component
    if mine.name.casefold() != component.name.casefold():
        return False
    if component.instance is not None and (mine.instance or "").casefold() != (
        component.instance.casefold()
    ):
        return False
    if component.evse is not None and mine.evse != component.evse:
        return False
    if component.connector is not None and mine.connector != component.connector:
        return False
    if name is not None and variable.name.casefold() != name.casefold():
        return False
    return instance is None or (variable.instance or "").casefold() == instance.casefold()


def _component_key(component: Component) -> tuple[Any, ...]:
    instance = None if component.instance is None else component.instance.casefold()
    return (component.name.casefold(), instance, component.evse, component.connector)


def address_of(variable: Variable, attribute: Attribute = Attribute.actual) -> VariableAddress:
    c = variable.component
    return VariableAddress(c.name, c.instance or "", c.evse or 0, c.connector or 0,
                           variable.name, variable.instance or "", str(attribute))  # fmt: skip


class DeviceModel:
    """Components and variables, their values and the rules for changing them."""

    def __init__(
        self,
        catalogue: Sequence[Variable],
        configuration: ConfigurationPort,
        store: VariableStore,
        stored: Mapping[VariableAddress, str],
        live: Mapping[str, LiveSource] | None = None,
    ) -> None:
        """``stored``: the device_variable rows, read beforehand (`DeviceModel.open` reads them;
        the charger's wiring, which builds its services synchronously, reads them first)."""
        self.catalogue = tuple(catalogue)
        self.configuration = configuration
        self._store = store
        self._live = dict(live or {})
        self._listeners: list[Listener] = []
        self._own_change: str | None = None  # the 1.6 key a SetVariables is changing now
        self._by_key: dict[str, list[Variable]] = {}
        self._values: dict[VariableAddress, str] = {}
        self._live_told: dict[VariableAddress, str | None] = {}  # live values last announced
        #: component -> (variable name, instance) -> variable, all case-folded: GetVariables
        #: looks up every item, and a bench CSMS polls
        self._index: dict[tuple[Any, ...], dict[tuple[str, str], Variable]] = {}
        for variable in self.catalogue:
            names = (variable.name.casefold(), (variable.instance or "").casefold())
            self._index.setdefault(_component_key(variable.component), {})[names] = variable
            if variable.key is not None:
                spec = configuration.keys.spec(variable.key)
                if spec is None:
                    raise KeyError(f"{variable.label()} names unknown key {variable.key}")
                self._by_key.setdefault(spec.name, []).append(variable)
            elif variable.stored:
                self._values[address_of(variable)] = self._loaded(variable, stored)
        self._unsubscribe = configuration.keys.subscribe(self._key_changed)

    @classmethod
    async def open(
        cls,
        catalogue: Sequence[Variable],
        configuration: ConfigurationPort,
        store: VariableStore,
        live: Mapping[str, LiveSource] | None = None,
    ) -> DeviceModel:
        return cls(catalogue, configuration, store, await store.load_variables(), live)

    def close(self) -> None:
        """Stop following the configuration keys."""
        self._unsubscribe()

    def _loaded(self, variable: Variable, stored: Mapping[VariableAddress, str]) -> str:
        text = stored.get(address_of(variable))
        if text is None:
            return variable.default
        try:
            return variable.check(text)
        except ValueError as exc:
            log.warning("stored %s = %r is invalid (%s); using the default %r",
                        variable.label(), text, exc.args[-1], variable.default)  # fmt: skip
            return variable.default

    # -- finding -------------------------------------------------------------------------------

    def find(
        self, component: Component, name: str, instance: str | None = None
    ) -> Variable | GetStatus:
        """The variable, or UnknownComponent / UnknownVariable (names are case-insensitive)."""
        variables = self._index.get(_component_key(component))
        if variables is None:
            return GetStatus.unknown_component
        found = variables.get((name.casefold(), (instance or "").casefold()))
        return GetStatus.unknown_variable if found is None else found

    def variable(self, component: str, name: str, instance: str | None = None) -> Variable:
        """A variable of a charge-point-wide component, for the 2.0.1 services (TxStartPoint)."""
        found = self.find(Component(component), name, instance)
        if not isinstance(found, Variable):
            raise KeyError(f"{component}.{name}")
        return found

    # -- values --------------------------------------------------------------------------------

    def value(self, variable: Variable, attribute: Attribute = Attribute.actual) -> str | None:
        """The attribute's current value; None for a write-only one or one it does not have."""
        if attribute != Attribute.actual:
            return dict(variable.extra).get(attribute)
        if variable.mutability == Mutability.write_only:
            return None
        if variable.key is not None:
            spec = self.configuration.keys.spec(variable.key)
            assert spec is not None
            return variable.codec.from_key(spec.format(self.configuration.keys.get(spec.name)))
        if variable.live is not None:
            source = self._live.get(variable.live)
            found = None if source is None else source(variable.component)
            if found is None and variable.live == "date_time":
                found = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
            return variable.default if found is None else found
        return self._values.get(address_of(variable), variable.default)

    def text(self, component: str, name: str, instance: str | None = None) -> str:
        """The Actual value of a charge-point-wide variable (TxStartPoint, OfflineThreshold)."""
        return self.value(self.variable(component, name, instance)) or ""

    def limits(self, variable: Variable) -> Limits:
        """Its characteristics, with what a 1.6 key adds: range, choices, a maximum count."""
        low, high, allowed = variable.min_limit, variable.max_limit, variable.values_list
        keys = self.configuration.keys
        spec = None if variable.key is None else keys.spec(variable.key)
        if spec is not None:
            if spec.kind in (int, float):
                low = spec.minimum if low is None else low
                high = spec.maximum if high is None else high
            if spec.choices and not allowed:
                allowed = tuple(variable.codec.from_key(",".join(spec.choices)).split(","))
        if variable.max_limit_key is not None:
            high = float(keys.get(variable.max_limit_key))
        return Limits(low, high, allowed)

    # -- GetVariables / SetVariables -------------------------------------------------------------

    def get(
        self,
        component: Component,
        name: str,
        instance: str | None = None,
        attribute: str = "Actual",
    ) -> Outcome:
        found = self.find(component, name, instance)
        if not isinstance(found, Variable):
            return Outcome(str(found))
        if attribute not in found.attributes:
            return Outcome(GetStatus.not_supported)
        if attribute == Attribute.actual and found.mutability == Mutability.write_only:
            return Outcome(GetStatus.rejected, reason="WriteOnly",
                           info=f"{found.label()} is write-only")  # fmt: skip
        return Outcome(GetStatus.accepted, self.value(found, Attribute(attribute)))

    async def set(
        self,
        component: Component,
        name: str,
        value: str,
        instance: str | None = None,
        attribute: str = "Actual",
        *,
        by_csms: bool = True,
    ) -> Outcome:
        """Validate, persist (committed before the answer), apply, tell the listeners."""
        found = self.find(component, name, instance)
        if not isinstance(found, Variable):
            return Outcome(str(found))
        if attribute not in found.attributes:
            return Outcome(SetStatus.not_supported)
        if attribute != Attribute.actual or found.mutability == Mutability.read_only:
            return Outcome(SetStatus.rejected, reason="ReadOnly",
                           info=f"{found.label()} is read-only")  # fmt: skip
        limits = self.limits(found)
        try:
            text = found.check(value, min_limit=limits.min_limit, max_limit=limits.max_limit,
                               values_list=limits.values_list)  # fmt: skip
        except ValueError as exc:
            reason, info = exc.args
            log.info("SetVariables %s rejected: %s", found.label(), info)
            return Outcome(SetStatus.rejected, reason=reason, info=f"{found.label()}: {info}")
        if found.key is not None:
            return await self._set_key(found, text, by_csms)
        address = address_of(found)
        try:
            await self._store.save_variable(address, text)
        except (HilsimError, OSError) as exc:  # a value not saved is not in use
            log.error("SetVariables %s not saved (%s): Rejected", found.label(), exc)
            return Outcome(SetStatus.rejected, reason="InternalError", info=str(exc))
        self._values[address] = text
        log.info("device model %s = %s", found.label(), text)
        self._notify(VariableChange(found, Attribute.actual, text, by_csms))
        status = SetStatus.reboot_required if found.reboot_required else SetStatus.accepted
        return Outcome(status)

    async def _set_key(self, variable: Variable, text: str, by_csms: bool) -> Outcome:
        spec = None if variable.key is None else self.configuration.keys.spec(variable.key)
        assert variable.key is not None and spec is not None
        self._own_change = spec.name if by_csms else None
        try:
            change = await self.configuration.configure(variable.key, variable.codec.to_key(text))
        finally:
            self._own_change = None
        if change.status == ChangeStatus.accepted:
            return Outcome(SetStatus.accepted)
        if change.status == ChangeStatus.reboot_required:
            return Outcome(SetStatus.reboot_required)
        why = change.why
        if variable.mutability == Mutability.write_only:
            why = why.replace(variable.codec.to_key(text), "(not shown)")
        return Outcome(SetStatus.rejected, reason="InvalidValue", info=f"{variable.label()}: {why}")

    # -- reports ---------------------------------------------------------------------------------

    def report(self, base: str) -> list[dict[str, Any]] | None:
        """GetBaseReport's ReportData, in catalogue order; None for a base not supported."""
        try:
            chosen = ReportBase(base)
        except ValueError:
            return None
        return [self.report_data(v) for v in self.catalogue if in_report(v, chosen)]

    def custom_report(
        self,
        wanted: Sequence[tuple[Component, str | None, str | None]] = (),
        criteria: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """GetReport's ReportData: the variables ``wanted`` names, as (component, variable name,
        variable instance; None: any), of the components meeting every criterion (Active,
        Available, Enabled, Problem: the component's variable of that name is true).

        A component left without EVSE, connector or instance in ``wanted`` names all of them.
        """
        chosen = []
        for variable in self.catalogue:
            if wanted and not any(_names(variable, *item) for item in wanted):
                continue
            if criteria and not all(self._meets(variable.component, c) for c in criteria):
                continue
            chosen.append(self.report_data(variable))
        return chosen

    def _meets(self, component: Component, criterion: str) -> bool:
        for variable in self.catalogue:
            if variable.component == component and variable.name == criterion:
                return self.value(variable) == "true"
        return False

    def report_data(self, variable: Variable) -> dict[str, Any]:
        values = [(kind, self.value(variable, kind)) for kind in variable.attributes]
        return report_data(variable, values, self.limits(variable))

    # -- changes ---------------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(change)`` after every change of a variable; returns an unsubscribe."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def live_changed(self, component: Component, name: str) -> None:
        """The charger says a live variable changed (a connector's AvailabilityState)."""
        found = self.find(component, name)
        if not isinstance(found, Variable):
            return
        value = self.value(found)
        address = address_of(found)
        # A status change that leaves the variable as it was (Preparing -> Charging: Occupied
        # both) is no news.
        if self._live_told.get(address) != value:
            self._live_told[address] = value
            self._notify(VariableChange(found, Attribute.actual, value, False))

    def _key_changed(self, spec: KeySpec, value: Value) -> None:
        variables = self._by_key.get(spec.name, ())
        by_csms = self._own_change == spec.name
        for variable in variables:
            text = None
            if variable.mutability != Mutability.write_only:
                text = variable.codec.from_key(spec.format(value))
            self._notify(VariableChange(variable, Attribute.actual, text, by_csms))

    def _notify(self, change: VariableChange) -> None:
        # A broken listener must not turn an applied change into an error, nor keep the others
        # from hearing of it.
        for listener in tuple(self._listeners):
            try:
                listener(change)
            except Exception:
                log.exception("device model listener failed for %s", change.variable.label())
