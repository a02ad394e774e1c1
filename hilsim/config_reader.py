"""Reading a TOML table with errors that name the file, the key and what was expected.

hilsim.config reads its own tables with this; it lives apart so that the readers (the same rules
for every string, number, path and choice) are one piece, and config.py only says which keys
its tables have.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from hilsim.errors import ConfigError

logger = logging.getLogger(__name__)


def describe_value(value: object) -> str:
    """Show a value the way the person wrote it in TOML, so they can find it in the file.

    Shared by every module that parses its own table (panel, meter, web), which see the frozen
    copy in `Settings.raw`: mappings and tuples there, dicts and lists here.
    """
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, datetime | date | time):
        return f"{value.isoformat()} (a date/time)"
    return repr(value)


def _is_number(value: object) -> bool:
    # bool is an int subclass; `voltage_V = true` is a typo, never a number.
    return isinstance(value, int | float) and not isinstance(value, bool)


class TableReader:
    """Carries the file name and base directory through validation so every error can name them."""

    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir

    def error(self, key: str | None, expected: str) -> ConfigError:
        return ConfigError(self.source, key, expected)

    # -- structure -----------------------------------------------------------------------------

    def table(self, document: dict[str, Any], name: str) -> dict[str, Any]:
        value = document.get(name, {})
        if not isinstance(value, dict):
            raise self.error(name, f"expected a [{name}] table, got {describe_value(value)}")
        return value

    def check_keys(
        self, prefix: str | None, table: dict[str, Any], known: Iterable[str], what: str = "key"
    ) -> None:
        known = tuple(known)
        for key in table:
            if key not in known:
                raise self.error(
                    self.join(prefix, key),
                    f"unknown {what}; known {what}s are: {', '.join(known)}",
                )

    @staticmethod
    def join(prefix: str | None, key: str) -> str:
        return f"{prefix}.{key}" if prefix else key

    # -- scalar readers ------------------------------------------------------------------------

    def optional_string(
        self, table: dict[str, Any], prefix: str, key: str, *, max_length: int | None = None
    ) -> str | None:
        """The string at `key`, or None when absent; present but empty is an error."""
        if key not in table:
            return None
        dotted = self.join(prefix, key)
        value = table[key]
        if not isinstance(value, str):
            raise self.error(dotted, f"expected a string, got {describe_value(value)}")
        if not value.strip():
            raise self.error(dotted, f"expected a non-empty string, got {value!r}")
        if max_length is not None and len(value) > max_length:
            raise self.error(
                dotted,
                f"expected a string of at most {max_length} characters (OCPP 1.6 limit), "
                f"got {len(value)} characters",
            )
        return value

    def required_string(self, table: dict[str, Any], prefix: str, key: str) -> str:
        value = self.optional_string(table, prefix, key)
        if value is None:
            raise self.error(self.join(prefix, key), "missing key; expected a non-empty string")
        return value

    def number(
        self,
        table: dict[str, Any],
        prefix: str,
        key: str,
        default: float,
        maximum: float,
    ) -> float:
        dotted = self.join(prefix, key)
        if key not in table:
            return default
        value = table[key]
        expected = f"expected a number greater than 0 and at most {maximum:g}"
        if not _is_number(value):
            raise self.error(dotted, f"{expected}, got {describe_value(value)}")
        if not math.isfinite(value) or not 0 < value <= maximum:
            raise self.error(dotted, f"{expected}, got {describe_value(value)}")
        return float(value)

    def integer(
        self,
        table: dict[str, Any],
        prefix: str,
        key: str,
        default: int,
        minimum: int,
        maximum: int,
    ) -> int:
        dotted = self.join(prefix, key)
        if key not in table:
            return default
        value = table[key]
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(
                dotted,
                f"expected an integer from {minimum} to {maximum}, got {describe_value(value)}",
            )
        if not minimum <= value <= maximum:
            raise self.error(
                dotted, f"expected an integer from {minimum} to {maximum}, got {value!r}"
            )
        return value

    def path(self, table: dict[str, Any], prefix: str, key: str, default: Path) -> Path:
        self.check_keys(prefix, table, (key,))
        text = self.optional_string(table, prefix, key)
        path = default if text is None else Path(text).expanduser()
        if not path.is_absolute():
            path = self.base_dir / path
        # normpath, not resolve(): following symlinks would surprise people who use them on purpose.
        return Path(os.path.normpath(path.absolute()))

    def choice(self, table: dict[str, Any], prefix: str, key: str, choices: tuple[str, ...]) -> str:
        """One of `choices`, the first being the default."""
        value = table.get(key, choices[0])
        if value not in choices:
            raise self.error(
                self.join(prefix, key),
                f"expected one of {', '.join(repr(c) for c in choices)}, "
                f"got {describe_value(value)}",
            )
        return str(value)
