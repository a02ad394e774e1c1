"""The OCPP configuration keys: their descriptions (`spec`), the table of them (`table`) and the
live values with ChangeConfiguration's rules (`service`).

Everything is re-exported here, so `from hilsim.keys import X` names one place whatever module
of the package X lives in.
"""

from hilsim.keys.service import Change, ChangeStatus, ConfigurationKeys, installation_seed
from hilsim.keys.spec import Guard, KeySpec, Listener, Saver, Value
from hilsim.keys.table import (
    FEATURE_PROFILES,
    LOCAL_LIST_MAX_LENGTH,
    MEASURANDS,
    SAMPLED_DEFAULT,
    SEND_LOCAL_LIST_MAX_LENGTH,
    SPECS,
    SPECS_BY_NAME,
    index_specs,
    is_secret_key,
    lookup,
)

__all__ = [
    "FEATURE_PROFILES",
    "LOCAL_LIST_MAX_LENGTH",
    "MEASURANDS",
    "SAMPLED_DEFAULT",
    "SEND_LOCAL_LIST_MAX_LENGTH",
    "SPECS",
    "SPECS_BY_NAME",
    "Change",
    "ChangeStatus",
    "ConfigurationKeys",
    "Guard",
    "KeySpec",
    "Listener",
    "Saver",
    "Value",
    "index_specs",
    "installation_seed",
    "is_secret_key",
    "lookup",
]
