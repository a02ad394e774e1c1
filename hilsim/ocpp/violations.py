"""The CALLERROR a schema violation is answered with: OCPP-J 1.6 (section 4.2.3), per keyword.

Kept apart from the compiler that raises these, so the mapping from a violated draft-04 keyword
to its OCPP code reads in one place (`hilsim.ocpp.validation` explains where it differs from the
`ocpp` library's choice).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

log = logging.getLogger(__name__)

# Which CALLERROR a violated keyword is answered with, as OCPP-J 1.6 (4.2.3) describes each code:
# a missing field makes the payload "incomplete" (ProtocolError, as the library answers too), a
# wrong type or an over-long string a TypeConstraintViolation, a field the PDU does not have a
# FormationViolation; a well-typed value the field does not allow a PropertyConstraintViolation.
CODES = {
    "type": "TypeConstraintViolation",
    "maxLength": "TypeConstraintViolation",
    "additionalProperties": "FormationViolation",
    "required": "ProtocolError",
    "enum": "PropertyConstraintViolation",
    "multipleOf": "PropertyConstraintViolation",
    "minimum": "PropertyConstraintViolation",
    "maximum": "PropertyConstraintViolation",
    "minItems": "OccurenceConstraintViolation",
    "maxItems": "OccurenceConstraintViolation",
    "dateRange": "PropertyConstraintViolation",
}
OTHER_CODE = "FormationViolation"


class SchemaViolation(Exception):
    """A payload breaks its schema. ``error_code`` is the CALLERROR code to answer it with."""

    def __init__(self, keyword: str, message: str, path: Sequence[str | int] = ()) -> None:
        super().__init__(message)
        self.keyword = keyword
        self.message = message
        self.path: list[str | int] = list(path)

    @property
    def error_code(self) -> str:
        return CODES.get(self.keyword, OTHER_CODE)

    @property
    def where(self) -> str:
        """Where the offending value is, e.g. ``chargingSchedule/chargingSchedulePeriod/0``."""
        return "/".join(str(part) for part in self.path)

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.path else self.message


class UnknownSchema(SchemaViolation):
    """No schema for this action: the library answers NotImplemented, and so do we."""

    @property
    def error_code(self) -> str:
        return "NotImplemented"
