"""One configuration key's description (`KeySpec`): its type, range and text form.

Kept apart from the table of keys and from the live values so the rules for parsing and
formatting a value are read, and tested, in one place.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Value = int | bool | float | str
Listener = Callable[["KeySpec", Value], None]
Guard = Callable[[Value], "str | None"]
#: Persists an accepted value (committed, durable) before it is applied; raises if it cannot.
Saver = Callable[["KeySpec", Value], Awaitable[None]]

# Strict on purpose: Python's int()/float() also accept "1_000", " 7 ", "nan" and non-ASCII
# digits, none of which a CSMS should be able to slip into a timer.
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
#: ChangeConfiguration.req's value is a CiString500Type.
_MAX_TEXT_LENGTH = 500


@dataclass(frozen=True, slots=True)
class KeySpec:
    """Name, type, default and range of one key; the single source of truth for its text form."""

    name: str
    kind: type  # int, bool, float or str
    default: Value
    minimum: float | None = None
    maximum: float | None = None
    readonly: bool = False
    aliases: tuple[str, ...] = ()
    description: str = ""
    #: A str key with `choices` or `member` is an OCPP comma-separated list (CSL): each member
    #: must be one of `choices` or match the regex `member`, none twice, at most `max_items`.
    choices: tuple[str, ...] = ()
    member: str | None = None
    max_items: int | None = None
    #: A str key that is not a list must match the regex `pattern` (said as `pattern_text`).
    pattern: str | None = None
    pattern_text: str = ""
    #: A secret (AuthorizationKey): never reported, logged or stored with the other keys.
    writeonly: bool = False

    @property
    def is_list(self) -> bool:
        return bool(self.choices) or self.member is not None

    def parse(self, text: str) -> Value:
        """Turn the text of a ChangeConfiguration into a value, or say why it cannot be one.

        Raises ValueError with a reason fit for a log line.
        """
        if self.kind is bool:
            lowered = text.lower()
            if lowered not in ("true", "false"):
                raise ValueError(f"{self.name}: expected 'true' or 'false', got {text!r}")
            return lowered == "true"
        if self.kind is int:
            if not _INTEGER.fullmatch(text):
                raise ValueError(f"{self.name}: expected a decimal integer, got {text!r}")
            return self.check(int(text))
        if self.kind is float:
            if not _DECIMAL.fullmatch(text):
                raise ValueError(f"{self.name}: expected a decimal number, got {text!r}")
            return self.check(float(text))
        if self.kind is str:
            return self.check(text)
        raise TypeError(f"{self.name}: unsupported kind {self.kind!r}")

    def check(self, value: object) -> Value:
        """Validate an already-typed value (from the TOML file or code) against kind and range.

        Returns it converted to `kind` (an int is accepted for a float key). Raises ValueError.
        """
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{self.name}: expected a boolean, got {value!r}")
            return value
        if self.kind is str:
            return self._check_text(value)
        # bool is an int subclass; True is never a sensible interval or voltage.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{self.name}: expected {self._kind_name()}, got {value!r}")
        if self.kind is int:
            if not isinstance(value, int):
                raise ValueError(f"{self.name}: expected an integer, got {value!r}")
            number: int | float = value
        else:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(f"{self.name}: expected a finite number, got {value!r}")
        low_ok = self.minimum is None or number >= self.minimum
        high_ok = self.maximum is None or number <= self.maximum
        if not (low_ok and high_ok):
            raise ValueError(
                f"{self.name}: expected {self._kind_name()} {self._range_text()}, got {value!r}"
            )
        return number

    def _check_text(self, value: object) -> str:
        """A text key's value; a list is returned normalised ("a, b" -> "a,b")."""
        if not isinstance(value, str):
            raise ValueError(f"{self.name}: expected text, got {value!r}")
        if len(value) > _MAX_TEXT_LENGTH:
            raise ValueError(
                f"{self.name}: expected at most {_MAX_TEXT_LENGTH} characters, got {len(value)}"
            )
        if not self.is_list:
            if self.pattern is not None and re.fullmatch(self.pattern, value) is None:
                # Never the value itself: it may be a secret.
                raise ValueError(f"{self.name}: expected {self.pattern_text or self.pattern}")
            return value
        # An empty value is the empty list (e.g. no measurands in StopTransaction).
        items = [item.strip() for item in value.split(",")] if value.strip() else []
        if any(not item for item in items):
            raise ValueError(
                f"{self.name}: expected a comma-separated list without empty members, "
                f"got {value!r}"
            )
        for item in items:
            if not self._member_ok(item):
                raise ValueError(
                    f"{self.name}: expected members {self._members_text()}, got {item!r}"
                )
        if len(set(items)) != len(items):
            raise ValueError(f"{self.name}: expected each member once, got {value!r}")
        if self.max_items is not None and len(items) > self.max_items:
            raise ValueError(
                f"{self.name}: expected at most {self.max_items} members, got {len(items)}"
            )
        return ",".join(items)

    def _member_ok(self, item: str) -> bool:
        if self.choices:
            return item in self.choices
        return self.member is not None and re.fullmatch(self.member, item) is not None

    def _members_text(self) -> str:
        if self.choices:
            return "from " + ", ".join(self.choices)
        return f"matching {self.member}"

    def items(self, value: Value) -> tuple[str, ...]:
        """The members of a list key's value."""
        text = str(value)
        return tuple(text.split(",")) if text else ()

    def format(self, value: Value) -> str:
        """The text form used on the wire and in the database, so both round-trip through parse."""
        if self.kind is str:
            return str(value)
        if self.kind is bool:
            return "true" if value else "false"
        if self.kind is float:
            # repr is the shortest text that round-trips: 230.0 -> "230.0", 0.1 -> "0.1".
            return repr(float(value))
        return str(int(value))

    def shown(self, value: Value) -> str:
        """The value as a log line may show it."""
        return "(write-only, not shown)" if self.writeonly else self.format(value)

    def _kind_name(self) -> str:
        names = {bool: "a boolean", int: "an integer", float: "a number", str: "text"}
        return names.get(self.kind, "a value")

    def _range_text(self) -> str:
        def show(bound: float) -> str:
            return self.format(bound) if self.kind is float else str(int(bound))

        if self.minimum is not None and self.maximum is not None:
            return f"from {show(self.minimum)} to {show(self.maximum)}"
        if self.minimum is not None:
            return f"of at least {show(self.minimum)}"
        if self.maximum is not None:
            return f"of at most {show(self.maximum)}"
        return ""
