"""OCPP 1.6 smart charging as data: charging profiles, and the limit they impose at any instant.

Pure on purpose (stdlib only, no IO, no clock of its own): the charger asks "what is the limit at
time t, and when does it next change?", and this module answers from the installed profiles, so
every rule below is tested at chosen instants against values worked out by hand.

The rules, from OCPP 1.6 edition 2 (sections 3.13 and 5.16/7.7-7.10) with its errata; where the
specification leaves a choice, the choice a real charger makes is said here:

* Within one purpose the active profile with the highest ``stackLevel`` wins. A profile is active
  at t when t is inside its validity period (``validFrom`` <= t < ``validTo``) *and* its schedule
  has a period at t (started, not past ``duration``). A higher stack level whose schedule ended
  therefore hands over to the next one down, as OCPP 2.0.1 later wrote down.
* For a connector, a TxProfile overrides the TxDefaultProfile, and a TxDefaultProfile installed
  on the connector overrides one installed on connector 0. A TxProfile lives only as long as its
  transaction: the charger installs it for a running transaction (or the one a RemoteStart is
  about to start) and drops it when that ends.
* The ChargePointMaxProfile caps the whole charge point. It is shared among the connectors that
  are in a transaction by water-filling: none gets more than it can use (its own limit), the
  rest is split evenly. A connector whose share falls below its schedule's ``minChargingRate``
  gets 0 instead (charging below the rate the EV can use is pointless) and its share goes to
  the others.
* The connector's own ``max_power_W`` always caps the result.
* Limits in A are per phase: W = A x voltage x phases, where phases is the smaller of the
  period's ``numberPhases`` (3 when absent, as the specification says) and the phases the
  connector has.
* Absolute schedules start at ``startSchedule`` (the moment the profile arrived when absent).
  Recurring ones repeat every day or week counted from ``startSchedule``, also backwards, so a
  daily profile whose ``startSchedule`` is tomorrow already applies today. Relative ones start
  with the connector's transaction; without a transaction they are evaluated as if it started
  now (so their first period shows, and GetCompositeSchedule answers what a transaction starting
  at the request would get).

The package: :mod:`~hilsim.smart_charging.profiles` (profiles as data, one profile's timing)
and :mod:`~hilsim.smart_charging.engine` (the limits and the composite schedule); every public
name is importable from here.
"""

from hilsim.smart_charging.engine import (
    ConnectorContext,
    Limit,
    ProfileSet,
    effective_phases,
    to_watts,
)
from hilsim.smart_charging.profiles import (
    DAY_S,
    WEEK_S,
    Kind,
    Period,
    Profile,
    ProfileRejected,
    Purpose,
    RateUnit,
    Recurrency,
    Schedule,
    iso,
    parse_time,
)

__all__ = [
    "DAY_S",
    "WEEK_S",
    "ConnectorContext",
    "Kind",
    "Limit",
    "Period",
    "Profile",
    "ProfileRejected",
    "ProfileSet",
    "Purpose",
    "RateUnit",
    "Recurrency",
    "Schedule",
    "effective_phases",
    "iso",
    "parse_time",
    "to_watts",
]
