"""A diagnostics archive's parts: the installation summary and the tar.gz itself.

Apart from `hilsim.firmware` (the jobs: when, how often, which statuses) since what goes into the
archive is a concern of its own; tarfile still loads only when a CSMS asks for diagnostics (1.6
GetDiagnostics, 2.0.1 GetLog).
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from hilsim.config import Settings


def installation_summary(settings: Settings) -> dict[str, Any]:
    """What a diagnostics archive says about the setup: no secret, no file contents."""
    from hilsim import __version__
    from hilsim.security import security_settings

    csms = urlsplit(settings.charge_point.csms_url)
    return {
        "hilsim_version": __version__,
        "config_file": settings.source,
        "csms": f"{csms.scheme}://{csms.hostname}:{csms.port or ''}{csms.path}",
        "security_profile_configured": security_settings(settings).profile,
        "connectors": [
            {
                "id": c.id,
                "voltage_V": c.voltage_V,
                "max_power_W": c.max_power_W,
                "phases": c.phases,
            }
            for c in settings.connectors
        ],
    }


def pack(database: Path, log_text: str, info: dict[str, Any]) -> bytes:
    """The tar.gz: the database copy, the log lines and the summary, readable by the owner."""
    import tarfile  # only when the CSMS asks for diagnostics

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(database, arcname="hilsim.db")
        for name, text in (
            ("log.txt", log_text),
            ("info.json", json.dumps(info, indent=2, default=str) + "\n"),
        ):
            data = text.encode("utf-8")
            member = tarfile.TarInfo(name)
            member.size = len(data)
            member.mtime = int(time.time())
            member.mode = 0o600
            tar.addfile(member, io.BytesIO(data))
    return buffer.getvalue()
