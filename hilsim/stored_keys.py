"""Configuration keys kept in the database: seeded from the specs' defaults, loaded, saved.

Between the keys (hilsim.keys: names, types, defaults) and storage (hilsim.store: text in the
configuration_key table), so that neither has to import the other: storage stays below every
service, and the keys know nothing of SQLite.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from hilsim.keys import SPECS, ConfigurationKeys, KeySpec, Saver, Value, lookup
from hilsim.store import Store

logger = logging.getLogger(__name__)


def save_key(store: Store) -> Saver:
    """How `ConfigurationKeys.set` persists a key here: under its canonical name, as text."""

    async def save(spec: KeySpec, value: Value) -> None:
        await store.save_key(spec.name, spec.format(value))

    return save


async def load_configuration(
    store: Store, seed: Mapping[str, Value] | None = None
) -> ConfigurationKeys:
    """Build the live configuration keys from the database, seeding defaults on first start.

    `seed` overrides spec defaults (e.g. voltage_V from the TOML's first connector). A stored value
    that no longer parses (hand edits, an older release with a wider range) is logged and replaced
    by the default: a bad row must never keep the charge point from booting.
    """
    defaults: dict[str, Value] = {spec.name: spec.default for spec in SPECS}
    for name, value in (seed or {}).items():
        spec = lookup(name)
        if spec is None:
            raise KeyError(f"seed names unknown configuration key {name!r}")
        try:
            defaults[spec.name] = spec.check(value)
        except ValueError as exc:
            logger.warning("ignoring seed (%s); using default %s", exc, spec.format(spec.default))
    # A write-only key (a secret) is kept by its owner (hilsim.security), never in SQLite.
    await store.seed_keys(
        {spec.name: spec.format(defaults[spec.name]) for spec in SPECS if not spec.writeonly}
    )

    values = dict(defaults)
    for name, text in (await store.load_keys()).items():
        spec = lookup(name)
        if spec is None or spec.writeonly:
            logger.debug("%s: ignoring stored key %s unknown to this release", store.path, name)
            continue
        try:
            values[spec.name] = spec.parse(text)
        except ValueError as exc:
            logger.warning(
                "%s: stored value is invalid (%s); using default %s",
                store.path,
                exc,
                spec.format(defaults[spec.name]),
            )
    return ConfigurationKeys(values)
