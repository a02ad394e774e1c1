"""The handlers of the CSMS's FirmwareManagement CALLs: UpdateFirmware and GetDiagnostics.

A mixin of `ChargePointClient` (its router finds the ``@on`` methods of every base). The answer
goes out at once; the download, installation and upload run on afterwards, reported by
FirmwareStatusNotification and DiagnosticsStatusNotification (see `hilsim.firmware`).
"""

from __future__ import annotations

from typing import Any

from hilsim.ocpp.ports import ChargerPort, FirmwarePort
from hilsim.ocpp.routing import on


class FirmwareHandlers:
    charger: ChargerPort  # provided by ChargePointClient

    @property
    def firmware(self) -> FirmwarePort:
        firmware = self.charger.firmware
        if firmware is None:
            raise RuntimeError("the charger has no firmware manager attached")
        return firmware

    @on("UpdateFirmware")
    def on_update_firmware(
        self,
        location: str,
        retrieve_date: str,
        retries: int | None = None,
        retry_interval: int | None = None,
    ) -> dict[str, Any]:
        self.firmware.update(location, retrieve_date, retries, retry_interval)
        return {}

    @on("GetDiagnostics")
    def on_get_diagnostics(
        self,
        location: str,
        retries: int | None = None,
        retry_interval: int | None = None,
        start_time: str | None = None,
        stop_time: str | None = None,
    ) -> dict[str, Any]:
        name = self.firmware.diagnostics(location, retries, retry_interval, start_time, stop_time)
        return {"fileName": name}
