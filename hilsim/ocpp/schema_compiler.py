"""A draft-04 JSON schema (the subset the OCPP 1.6 schemas use) compiled into nested closures.

`jsonschema` walks a schema anew for every payload; a compiled schema is one callable that checks
exactly what ``jsonschema.Draft4Validator`` checks, keyword by keyword in the schema's own order,
so the first violation found is the one the library would have raised. A schema with a
validating keyword outside the subset is refused when it is compiled, never half-checked.
`hilsim.ocpp.validation` decides which schemas, and with what bounds, are compiled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from hilsim.ocpp.violations import SchemaViolation

log = logging.getLogger(__name__)

Check = Callable[[Any], None]

#: Keywords that describe rather than constrain (draft-04 ignores ``format`` without a checker,
#: as the library's validators have none).
_ANNOTATIONS = frozenset(
    {"$schema", "id", "$id", "title", "description", "definitions", "javaType", "format"}
    # and the 2.0.1 schemas' own annotations
    | {"comment", "default"}
)


def compile_schema(
    schema: Mapping[str, Any],
    root: Mapping[str, Any] | None = None,
    *,
    exact_decimals: bool = False,
) -> Check:
    """One callable that raises the first SchemaViolation Draft4Validator would report.

    ``exact_decimals``: the schema and the payloads hold `decimal.Decimal` for JSON fractions.
    """
    numbers: tuple[type, ...] = (int, float)
    if exact_decimals:
        from decimal import Decimal

        numbers = (int, float, Decimal)
    return _Compiler(root if root is not None else schema, numbers).compile(schema)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": _is_integer,
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
_EXACT_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
}


class _Compiler:
    def __init__(self, root: Mapping[str, Any], numbers: tuple[type, ...]) -> None:
        self.root = root
        self._refs: dict[str, Check] = {}
        self._numbers = numbers

    def _is_number(self, value: Any) -> bool:
        return isinstance(value, self._numbers) and not isinstance(value, bool)

    def compile(self, schema: Any) -> Check:
        if not isinstance(schema, dict):
            raise ValueError(f"not a draft-04 schema: {schema!r}")
        if "$ref" in schema:  # draft-04: a $ref replaces every keyword beside it
            return self._ref(schema["$ref"])
        checks = []
        for keyword, value in schema.items():
            if keyword in _ANNOTATIONS:
                continue
            make = getattr(self, f"_{keyword}", None)
            if make is None:
                raise ValueError(f"schema keyword {keyword!r} is not supported")
            check = make(value, schema)
            if check is not None:
                checks.append(check)
        if not checks:
            return accept
        if len(checks) == 1:
            return checks[0]
        first, *rest = checks

        def all_of(value: Any) -> None:
            first(value)
            for check in rest:
                check(value)

        return all_of

    def _ref(self, ref: str) -> Check:
        if ref in self._refs:
            return self._refs[ref]
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref is supported, not {ref!r}")
        target = resolve_ref(self.root, ref)
        compiled: list[Check] = []

        def deferred(value: Any) -> None:  # a reference may be used before it is compiled
            compiled[0](value)

        self._refs[ref] = deferred
        compiled.append(self.compile(target))
        self._refs[ref] = compiled[0]
        return compiled[0]

    # -- keywords: each returns a check, or None when it can never fail ---------------------------

    def _type(self, types: str | list[str], schema: Mapping[str, Any]) -> Check:
        names = [types] if isinstance(types, str) else list(types)
        reprs = ", ".join(repr(name) for name in names)
        if len(names) == 1 and names[0] in _EXACT_TYPES:
            exact = _EXACT_TYPES[names[0]]

            def one_type(value: Any) -> None:
                if not isinstance(value, exact):
                    raise SchemaViolation("type", f"{value!r} is not of type {reprs}")

            return one_type
        tests = [self._is_number if name == "number" else _TYPES[name] for name in names]

        def any_type(value: Any) -> None:
            for test in tests:
                if test(value):
                    return
            raise SchemaViolation("type", f"{value!r} is not of type {reprs}")

        return any_type

    def _properties(self, properties: Mapping[str, Any], schema: Mapping[str, Any]) -> Check | None:
        checks = [(name, self.compile(sub)) for name, sub in properties.items()]
        checks = [(name, check) for name, check in checks if check is not accept]
        if not checks:
            return None

        def each_property(value: Any) -> None:
            if not isinstance(value, dict):
                return
            for name, check in checks:
                if name in value:
                    try:
                        check(value[name])
                    except SchemaViolation as violation:
                        violation.path.insert(0, name)
                        raise

        return each_property

    def _additionalProperties(
        self, allowed: bool | Mapping[str, Any], schema: Mapping[str, Any]
    ) -> Check | None:
        if "patternProperties" in schema:
            raise ValueError("patternProperties is not supported")
        known = frozenset(schema.get("properties", {}))
        if isinstance(allowed, dict):
            check = self.compile(allowed)

            def additional_schema(value: Any) -> None:
                if not isinstance(value, dict):
                    return
                for name in {key for key in value if key not in known}:
                    try:
                        check(value[name])
                    except SchemaViolation as violation:
                        violation.path.insert(0, name)
                        raise

            return additional_schema
        if allowed:
            return None

        def no_additional(value: Any) -> None:
            if not isinstance(value, dict):
                return
            for key in value:
                if key not in known:
                    extras = sorted({k for k in value if k not in known}, key=str)
                    verb = "was" if len(extras) == 1 else "were"
                    listed = ", ".join(repr(extra) for extra in extras)
                    raise SchemaViolation(
                        "additionalProperties",
                        f"Additional properties are not allowed ({listed} {verb} unexpected)",
                    )

        return no_additional

    def _required(self, names: list[str], schema: Mapping[str, Any]) -> Check | None:
        if not names:
            return None
        required = tuple(names)

        def all_present(value: Any) -> None:
            if not isinstance(value, dict):
                return
            for name in required:
                if name not in value:
                    raise SchemaViolation("required", f"{name!r} is a required property")

        return all_present

    def _enum(self, choices: list[Any], schema: Mapping[str, Any]) -> Check:
        if all(isinstance(choice, str) for choice in choices):
            allowed = frozenset(choices)

            def one_of_strings(value: Any) -> None:
                if not (isinstance(value, str) and value in allowed):
                    raise SchemaViolation("enum", f"{value!r} is not one of {choices!r}")

            return one_of_strings

        def one_of(value: Any) -> None:
            if not any(_equal(choice, value) for choice in choices):
                raise SchemaViolation("enum", f"{value!r} is not one of {choices!r}")

        return one_of

    def _minimum(self, limit: Any, schema: Mapping[str, Any]) -> Check:
        if schema.get("exclusiveMinimum"):
            raise ValueError("exclusiveMinimum is not supported")
        is_number = self._is_number

        def large_enough(value: Any) -> None:
            if is_number(value) and value < limit:
                raise SchemaViolation("minimum", f"{value!r} is less than the minimum of {limit}")

        return large_enough

    def _maximum(self, limit: Any, schema: Mapping[str, Any]) -> Check:
        if schema.get("exclusiveMaximum"):
            raise ValueError("exclusiveMaximum is not supported")
        is_number = self._is_number

        def small_enough(value: Any) -> None:
            if is_number(value) and value > limit:
                raise SchemaViolation(
                    "maximum", f"{value!r} is greater than the maximum of {limit}"
                )

        return small_enough

    def _maxLength(self, limit: int, schema: Mapping[str, Any]) -> Check:
        message = "is expected to be empty" if limit == 0 else "is too long"

        def short_enough(value: Any) -> None:
            if isinstance(value, str) and len(value) > limit:
                raise SchemaViolation("maxLength", f"{value!r} {message}")

        return short_enough

    def _minItems(self, limit: int, schema: Mapping[str, Any]) -> Check:
        message = "should be non-empty" if limit == 1 else "is too short"

        def long_enough(value: Any) -> None:
            if isinstance(value, list) and len(value) < limit:
                raise SchemaViolation("minItems", f"{value!r} {message}")

        return long_enough

    def _maxItems(self, limit: int, schema: Mapping[str, Any]) -> Check:
        # Used by the OCPP 2.0.1 schemas only (the 1.6 ones have none).
        def short_enough(value: Any) -> None:
            if isinstance(value, list) and len(value) > limit:
                raise SchemaViolation("maxItems", f"{value!r} is too long")

        return short_enough

    def _items(self, items: Any, schema: Mapping[str, Any]) -> Check | None:
        if isinstance(items, dict):
            check = self.compile(items)
            if check is accept:
                return None

            def every_item(value: Any) -> None:
                if not isinstance(value, list):
                    return
                for index, item in enumerate(value):
                    try:
                        check(item)
                    except SchemaViolation as violation:
                        violation.path.insert(0, index)
                        raise

            return every_item
        checks = [self.compile(sub) for sub in items]

        def by_position(value: Any) -> None:
            if not isinstance(value, list):
                return
            for index, (item, check) in enumerate(zip(value, checks, strict=False)):
                try:
                    check(item)
                except SchemaViolation as violation:
                    violation.path.insert(0, index)
                    raise

        return by_position

    def _additionalItems(self, allowed: Any, schema: Mapping[str, Any]) -> Check | None:
        items = schema.get("items", {})
        if isinstance(items, dict):
            return None  # draft-04: only meaningful beside a list of item schemas
        count = len(items)
        if isinstance(allowed, dict):
            check = self.compile(allowed)

            def additional_items(value: Any) -> None:
                if not isinstance(value, list):
                    return
                for index in range(count, len(value)):
                    try:
                        check(value[index])
                    except SchemaViolation as violation:
                        violation.path.insert(0, index)
                        raise

            return additional_items
        if allowed:
            return None

        def no_additional_items(value: Any) -> None:
            if isinstance(value, list) and len(value) > count:
                extras = value[count:]
                verb = "was" if len(extras) == 1 else "were"
                listed = ", ".join(repr(extra) for extra in extras)
                raise SchemaViolation(
                    "additionalItems",
                    f"Additional items are not allowed ({listed} {verb} unexpected)",
                )

        return no_additional_items

    def _multipleOf(self, step: Any, schema: Mapping[str, Any]) -> Check:
        is_number = self._is_number

        def multiple(value: Any) -> None:
            if not is_number(value):
                return
            if isinstance(step, float):
                try:
                    quotient = value / step
                    failed = int(quotient) != quotient
                except (ArithmeticError, ValueError, TypeError):
                    failed = True
            else:
                try:
                    failed = bool(value % step)
                except (ArithmeticError, TypeError, ValueError):  # decimal.InvalidOperation too
                    failed = True
            if failed:
                raise SchemaViolation("multipleOf", f"{value!r} is not a multiple of {step}")

        return multiple


def resolve_ref(root: Any, ref: str) -> Any:
    """The schema a local ``$ref`` (``#/definitions/...``) points to."""
    target = root
    for part in ref[2:].split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    return target


def accept(value: Any) -> None:
    """The check of a schema that cannot fail: compared by identity, so callers can drop it."""
    return None


def _equal(one: Any, two: Any) -> bool:
    """JSON equality as jsonschema sees it: ``True`` is not ``1``, in containers too."""
    if one is two:
        return True
    if isinstance(one, str) or isinstance(two, str):
        return bool(one == two)
    if isinstance(one, list) and isinstance(two, list):
        return len(one) == len(two) and all(_equal(a, b) for a, b in zip(one, two, strict=True))
    if isinstance(one, dict) and isinstance(two, dict):
        return one.keys() == two.keys() and all(_equal(one[k], two[k]) for k in one)
    if isinstance(one, bool) or isinstance(two, bool):
        return type(one) is type(two) and one == two
    return bool(one == two)
