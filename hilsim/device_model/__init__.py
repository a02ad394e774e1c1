"""OCPP 2.0.1's device model: the components and variables of this charge point (`catalogue`),
one variable's description and value rules (`variables`), the service that reads, writes and
reports them (`service`), and their wire forms (`report`, `requests`).

Only the 2.0.1 layer uses it: a 1.6 charge point never imports this package.
"""

from hilsim.device_model.catalogue import (
    DEVICE_DATA_LIMITS,
    TX_START_POINT,
    TX_STOP_POINT,
    EvseInfo,
    StationInfo,
    build_catalogue,
    station_info,
)
from hilsim.device_model.report import ReportBase, chunks, event_data
from hilsim.device_model.requests import get_variables, set_variables
from hilsim.device_model.service import (
    DeviceModel,
    GetStatus,
    LiveSource,
    Outcome,
    SetStatus,
    VariableChange,
)
from hilsim.device_model.variables import (
    Attribute,
    Component,
    DataType,
    Mutability,
    Variable,
)

__all__ = [
    "DEVICE_DATA_LIMITS",
    "TX_START_POINT",
    "TX_STOP_POINT",
    "Attribute",
    "Component",
    "DataType",
    "DeviceModel",
    "EvseInfo",
    "GetStatus",
    "LiveSource",
    "Mutability",
    "Outcome",
    "ReportBase",
    "SetStatus",
    "StationInfo",
    "Variable",
    "VariableChange",
    "build_catalogue",
    "chunks",
    "event_data",
    "get_variables",
    "set_variables",
    "station_info",
]
