"""Which SecurityEventNotifications a 2.0.1 charge point owes its CSMS, and when.

OCPP 2.0.1 (A04, and the security event list of appendix 1) requires a charge point to tell
its CSMS of security-relevant events: that it started (StartupOfTheDevice), was reset
(ResetOrReboot), had its clock set (SettingSystemTime), had its security parameters changed
(ReconfigurationOfSecurityParameters). The client sends them (`ChargePointClient201.
security_event`); this module keeps what must outlive one connection, so that StartupOfTheDevice
is sent once per process, after the first accepted BootNotification, not after every
reconnection.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

STARTUP = "StartupOfTheDevice"
RESET = "ResetOrReboot"
SETTING_TIME = "SettingSystemTime"
SECURITY_PARAMETERS = "ReconfigurationOfSecurityParameters"


class SecurityEvents:
    """The process's memory of the security events it has reported."""

    def __init__(self) -> None:
        self.startup_sent = False

    def first_boot_accepted(self) -> bool:
        """True the first time a BootNotification of this process is accepted, then False."""
        if self.startup_sent:
            return False
        self.startup_sent = True
        return True
