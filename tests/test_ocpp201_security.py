"""Security profiles 1-3 for an OCPP 2.0.1 charge point, over the real wire, and the security
events of a connection that fails (FailedToAuthenticateAtCsms, InvalidCsmsCertificate).

The CSMS is the built-in one (`hilsim.csms.CentralSystem`) on a real websockets server: it checks
the Basic auth header against the password it expects, serves wss:// with a certificate made in
the test, and asks for a client certificate under profile 3. Every frame either side sends is
also judged by the tests' strict 2.0.1 schemas (tests/scripted_csms201.py), and no secret may
reach any log record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import test_security as security_1_6
from certs import Issued, issue, server_context
from netproxy import Proxy
from scripted_csms201 import CALL, CALLRESULT, ScriptedCsms201, strict_violations

from hilsim.config import Settings
from hilsim.csms import CentralSystem
from hilsim.errors import CsmsError
from hilsim.ocpp.transport import HandshakeRefused, TlsFailure, tls_failure_kind
from hilsim.ocpp201 import security_events
from hilsim.ocpp201.security_events import SecurityEvents
from hilsim.security import basic_auth_header

from conftest import CP_ID

FAILED_AUTH = "FailedToAuthenticateAtCsms"
PASSWORD = security_1_6.PASSWORD
assert_no_secret = security_1_6.assert_no_secret
# the 1.6 security tests' fixtures: their certificates, services and log watches
pki, running, watch = security_1_6.pki, security_1_6.running, security_1_6.watch
BAD_CERT = "InvalidCsmsCertificate"


@pytest.fixture(autouse=True)
def debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


def settings_201(
    directory: Path, url: str, profile: int, *, password: str | None = None, **files: Path
) -> Settings:
    return security_1_6.secure_settings(
        directory, url, profile, password=password, version="2.0.1", **files
    )


class Judge:
    """Every frame of every connection, judged by the tests' strict 2.0.1 schemas."""

    def __init__(self) -> None:
        self.frames: list[tuple[bool, Any]] = []

    def __call__(self, charge_point_id: str, frame: Any) -> None:
        self.frames.append((frame.sent, json.loads(frame.text)))

    def violations(self) -> list[str]:
        actions: dict[tuple[bool, str], str] = {}
        found: list[str] = []
        for sent, msg in self.frames:
            if msg[0] == CALL:
                actions[(sent, msg[1])] = msg[2]
                found += strict_violations(msg[2], msg[3], response=False)
            elif msg[0] == CALLRESULT and (action := actions.pop((not sent, msg[1]), None)):
                found += strict_violations(action, msg[2], response=True)
        return found

    def actions(self) -> list[str]:
        return [msg[2] for _, msg in self.frames if msg[0] == CALL]


@pytest.fixture
async def judge() -> AsyncIterator[Judge]:
    judged = Judge()
    yield judged
    assert judged.frames, "no frame was judged"
    assert judged.violations() == []


def csms_201(judge: Judge, **options: Any) -> CentralSystem:
    return CentralSystem(ocpp_versions=("2.0.1",), on_frame=judge, **options)


async def booted(csms: CentralSystem) -> Any:
    """The charge point's next session, once its BootNotification is in."""
    session = await csms.wait_for_charge_point(CP_ID)
    assert session.ocpp_version == "2.0.1"
    await session.wait_for("BootNotification")
    return session


async def refusals(csms: CentralSystem, count: int, timeout: float = 10) -> None:
    """Until the CSMS has refused ``count`` handshakes."""
    async with asyncio.timeout(timeout):
        while len(csms.refusals) < count:
            await csms.wait_for_refusal()


def when(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["timestamp"])


def second(at: datetime) -> datetime:
    return at.replace(microsecond=0)


# -- profiles 1-3 -------------------------------------------------------------------------------


async def test_profile_1_basic_auth_and_a_new_basic_auth_password(
    short_dir: Path, running: Any, judge: Judge, caplog: pytest.LogCaptureFixture
) -> None:
    new = "a new password, set by SetVariables"
    async with csms_201(judge, passwords={CP_ID: PASSWORD}) as csms:
        service = await running(settings_201(short_dir, csms.url, 1, password=PASSWORD))
        first = await booted(csms)
        assert service.charger.snapshot()["csms"]["security"]["basic_auth"] is True
        assert await first.get_variable("SecurityCtrlr", "SecurityProfile") == "1"
        # write-only: the CSMS cannot read it back
        assert await first.get_variable("SecurityCtrlr", "BasicAuthPassword") is None
        csms.passwords = {CP_ID: new}  # what the CSMS checks from the next handshake on
        assert await first.set_variable("SecurityCtrlr", "BasicAuthPassword", new) == "Accepted"
        second_session = await booted(csms)  # it connected again, with the new password
        assert csms.refusals == []  # never with the old one after the change
        key_file = short_dir / "authorization_key"
        assert key_file.read_text().strip() == new.encode().hex()
        assert second_session.violations == [] and first.violations == []
    # The answer went out before the connection closed: it is in the first connection's frames,
    # and the second BootNotification comes after it.
    actions = judge.actions()
    assert actions.index("SetVariables") < len(actions) - actions[::-1].index("BootNotification")
    assert_no_secret(caplog, PASSWORD, new, new.encode().hex())


async def test_profile_2_tls_and_basic_auth(
    short_dir: Path, running: Any, judge: Judge, pki: dict[str, Issued],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    tls = server_context(pki["server"])
    async with csms_201(judge, ssl_context=tls, passwords={CP_ID: PASSWORD}) as csms:
        assert csms.url.startswith("wss://")
        settings = settings_201(short_dir, csms.url, 2, password=PASSWORD, ca_file=pki["ca"].cert)
        service = await running(settings)
        session = await booted(csms)
        assert service.charger.snapshot()["csms"]["security"]["profile"] == 2
        # Upwards only, and profile 3 not without a client certificate.
        for lower in ("1", "0"):
            assert await session.set_variable("SecurityCtrlr", "SecurityProfile", lower) == (
                "Rejected"
            )
        assert await session.set_variable("SecurityCtrlr", "SecurityProfile", "3") == "Rejected"
        assert await session.get_variable("SecurityCtrlr", "SecurityProfile") == "2"
        assert session.violations == []
    assert_no_secret(caplog, PASSWORD)


async def test_profile_3_client_certificate(
    short_dir: Path, running: Any, judge: Judge, pki: dict[str, Issued]
) -> None:
    mutual = server_context(pki["server"], client_ca=pki["ca"])
    assert mutual.verify_mode == ssl.CERT_REQUIRED
    async with csms_201(judge, ssl_context=mutual) as csms:
        settings = settings_201(
            short_dir, csms.url, 3, ca_file=pki["ca"].cert,
            client_cert=pki["client"].cert, client_key=pki["client"].key,
        )  # fmt: skip
        service = await running(settings)
        session = await booted(csms)
        assert service.charger.snapshot()["csms"]["security"]["client_certificate"] is True
        assert await session.get_variable("SecurityCtrlr", "SecurityProfile") == "3"
        assert csms.refusals == []


async def test_set_variables_raises_the_profile_and_connects_again_with_it(
    short_dir: Path, running: Any, judge: Judge, pki: dict[str, Issued],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """The CSMS moves the charge point from profile 1 to 2: same host and port, now wss://."""
    plain = csms_201(judge, passwords={CP_ID: PASSWORD})
    tls = csms_201(judge, ssl_context=server_context(pki["server"]), passwords={CP_ID: PASSWORD})
    async with plain, tls, Proxy(plain.port) as proxy:
        service = await running(
            settings_201(short_dir, f"ws://127.0.0.1:{proxy.port}", 1, password=PASSWORD,
                         ca_file=pki["ca"].cert)
        )  # fmt: skip
        first = await booted(plain)
        proxy.target_port = tls.port  # the CSMS's port now speaks TLS
        assert await first.set_variable("SecurityCtrlr", "SecurityProfile", "2") == "Accepted"
        upgraded = await booted(tls)
        assert await upgraded.get_variable("SecurityCtrlr", "SecurityProfile") == "2"
        assert (await service.store.load_keys())["SecurityProfile"] == "2"
        assert service.charger.snapshot()["csms"]["security"]["trying_new_setting"] is False
        # A new profile is a security event (sent at once, or after the next boot).
        reconfigured = [
            e for s in (first, upgraded) for e in s.security_events
            if e["type"] == "ReconfigurationOfSecurityParameters"
        ]  # fmt: skip
        if not reconfigured:
            reconfigured = [await upgraded.wait_for(
                "SecurityEventNotification",
                lambda p: p["type"] == "ReconfigurationOfSecurityParameters",
            )]  # fmt: skip
        assert reconfigured[0]["techInfo"] == "SecurityProfile set to 2"
        # and down again is refused
        assert await upgraded.set_variable("SecurityCtrlr", "SecurityProfile", "1") == "Rejected"
    assert_no_secret(caplog, PASSWORD)


# -- the security events of a failed connection -------------------------------------------------


async def test_a_refused_password_is_reported_once_after_the_next_accepted_boot(
    short_dir: Path, running: Any, judge: Judge, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not the password at all"
    async with csms_201(judge, passwords={CP_ID: wrong}) as csms:
        started = datetime.now(UTC)
        await running(settings_201(short_dir, csms.url, 1, password=PASSWORD))
        await refusals(csms, 3)  # refused, and retried: a streak of failures
        fixed = datetime.now(UTC)
        csms.passwords = {CP_ID: PASSWORD}  # the operator fixes it on the CSMS side
        session = await booted(csms)
        event = await session.wait_for(
            "SecurityEventNotification", lambda p: p["type"] == FAILED_AUTH
        )
        # when it happened, not when it could be sent
        assert second(started) <= when(event) <= fixed
        assert "HTTP 401" in event["techInfo"] and "security profile 1" in event["techInfo"]
        # Sent after the boot was accepted, like every other CALL of the connection.
        assert session.boot is not None
        # One event for the whole streak, however many times the backoff tried.
        await session.trigger_message("Heartbeat")
        await session.wait_for("Heartbeat")
        assert len(csms.refusals) >= 3
        assert [e["type"] for e in session.security_events].count(FAILED_AUTH) == 1
        assert session.violations == []
    assert caplog.text.count(f"security event {FAILED_AUTH}") == 1
    assert_no_secret(caplog, PASSWORD, wrong)


async def test_the_operator_fixes_the_password_at_the_charge_point(
    short_dir: Path, running: Any, judge: Judge, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused with the password it has; `hilsim config set AuthorizationKey` (through the
    control socket) gives it the right one while it cannot reach the CSMS: the next attempt
    connects, and the refusals are reported then."""
    right = "the password the CSMS was given"
    async with csms_201(judge, passwords={CP_ID: right}) as csms:
        service = await running(settings_201(short_dir, csms.url, 1, password=PASSWORD))
        await refusals(csms, 2)
        fixed = datetime.now(UTC)
        answer = await service.command(
            {"cmd": "config-set", "key": "AuthorizationKey", "value": right.encode().hex()}
        )
        assert answer["ok"], answer
        session = await booted(csms)
        event = await session.wait_for(
            "SecurityEventNotification", lambda p: p["type"] == FAILED_AUTH
        )
        assert when(event) <= fixed
        assert session.violations == []
    assert_no_secret(caplog, PASSWORD, right, right.encode().hex())


async def test_an_untrusted_csms_certificate_is_reported_after_the_next_accepted_boot(
    short_dir: Path, running: Any, judge: Judge, pki: dict[str, Issued], watch: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A CSMS whose certificate the charge point does not trust (issued by another CA), then
    the right one on the same address."""
    failed = watch("TLS handshake failed")
    impostor = issue(short_dir / "pki", pki["other_ca"], "impostor", "csms.test", server=True)
    stranger = CentralSystem(
        ocpp_versions=("2.0.1",), ssl_context=server_context(impostor),
        passwords={CP_ID: PASSWORD},
    )  # fmt: skip
    trusted = csms_201(judge, ssl_context=server_context(pki["server"]),
                       passwords={CP_ID: PASSWORD})  # fmt: skip
    async with stranger, trusted, Proxy(stranger.port) as proxy:
        started = datetime.now(UTC)
        url = f"wss://127.0.0.1:{proxy.port}"
        await running(settings_201(short_dir, url, 2, password=PASSWORD, ca_file=pki["ca"].cert))
        # at least three attempts: each logs it once, the security event once more
        await failed.wait(times=4)
        assert stranger.sessions == {} and stranger.refusals == []  # no password was sent
        fixed = datetime.now(UTC)
        proxy.target_port = trusted.port
        session = await booted(trusted)
        event = await session.wait_for(
            "SecurityEventNotification", lambda p: p["type"] == BAD_CERT
        )
        assert second(started) <= when(event) <= fixed
        assert "certificate" in event["techInfo"]
        await session.trigger_message("Heartbeat")
        await session.wait_for("Heartbeat")
        assert [e["type"] for e in session.security_events].count(BAD_CERT) == 1
        assert session.violations == []
    assert_no_secret(caplog, PASSWORD)


async def test_a_busy_csms_is_no_security_event_but_a_forbidden_one_is(
    short_dir: Path, running: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """HTTP 503 (the CSMS cannot take us now) is a network failure; 403 refuses our credentials:
    one FailedToAuthenticateAtCsms, stamped with the first 403, after the accepted boot."""
    async with ScriptedCsms201() as csms:
        csms.refuse_status = 503
        await running(settings_201(short_dir, csms.url, 1, password=PASSWORD))
        await csms.wait_for_refusals(2)
        csms.refuse_status = 403
        first_403 = datetime.now(UTC)
        await csms.wait_for_refusals(5)
        accepted_from = datetime.now(UTC)
        csms.refuse_status = None
        [event] = await csms.wait_for(
            "SecurityEventNotification", lambda p: p["type"] == FAILED_AUTH
        )
        assert second(first_403) <= when(event) <= accepted_from
        assert "HTTP 403" in event["techInfo"]
        await csms.result("TriggerMessage", {"requestedMessage": "Heartbeat"})
        await csms.wait_for("Heartbeat")
        sent = [p["type"] for p in csms.calls("SecurityEventNotification")]
        assert sent == ["StartupOfTheDevice", FAILED_AUTH]  # nothing for the 503s
        assert csms.refused[:2] == [503, 503] and csms.refused.count(403) >= 3
        assert csms.violations() == []
    # The charge point's records (the scripted CSMS's own websockets log shows the header).
    token = basic_auth_header(CP_ID, PASSWORD.encode()).split()[1]
    for record in caplog.records:
        if not record.name.startswith("websockets.server"):
            text = record.getMessage() + str(record.args)
            assert PASSWORD not in text and token not in text, record.name


async def test_another_charge_points_certificate_refused_is_a_failed_authentication(
    short_dir: Path, running: Any, pki: dict[str, Issued]
) -> None:
    """Profile 3: the CSMS refuses a client certificate of another charge point with 401: one
    FailedToAuthenticateAtCsms waits for the next accepted boot, however often it is retried."""
    mutual = server_context(pki["server"], client_ca=pki["ca"])
    async with CentralSystem(ocpp_versions=("2.0.1",), ssl_context=mutual) as csms:
        files = {"ca_file": pki["ca"].cert}
        wrong = settings_201(short_dir, csms.url, 3, client_cert=pki["stranger"].cert,
                             client_key=pki["stranger"].key, **files)  # fmt: skip
        service = await running(wrong)
        await refusals(csms, 3)
        charge_point, why = csms.refusals[0]
        assert charge_point == CP_ID and "SOMEONE-ELSE" in why
        pending = [kind for kind, _, _ in _memory(service).pending]
        assert pending == [FAILED_AUTH]  # queued once, however many retries
        assert csms.sessions == {}


def _memory(service: Any) -> SecurityEvents:
    watcher = service.link.connection_watcher
    assert isinstance(watcher, SecurityEvents)
    return watcher


# -- the pieces ---------------------------------------------------------------------------------


class _Wall:
    def __init__(self) -> None:
        self.step_listeners: list[Any] = []
        self.now = "2026-12-05T07:00:00.000Z"

    def iso(self) -> str:
        return self.now


class _Keys:
    def get(self, name: str) -> Any:
        return 2

    def subscribe(self, listener: Any) -> Any:
        return lambda: None


class _Owner:
    def __init__(self) -> None:
        self.keys, self.wall = _Keys(), _Wall()


def test_one_event_per_failure_streak() -> None:
    events, owner = SecurityEvents(), _Owner()
    refused = HandshakeRefused("ws://csms/CP: CSMS refused the WebSocket handshake (HTTP 401)", 401)
    for _ in range(5):
        events.connect_failed(refused, owner)
    events.connect_failed(CsmsError("ws://csms/CP: Connection refused"), owner)  # network: none
    events.connect_failed(HandshakeRefused("... (HTTP 404)", 404), owner)  # not our credentials
    owner.wall.now = "2026-12-05T07:00:05.000Z"
    events.connect_failed(TlsFailure("TLS handshake failed (certificate)", "certificate"), owner)
    events.connect_failed(HandshakeRefused("forbidden (HTTP 403)", 403), owner)  # same streak
    assert [(kind, at) for kind, _, at in events.pending] == [
        (FAILED_AUTH, "2026-12-05T07:00:00.000Z"),
        (BAD_CERT, "2026-12-05T07:00:05.000Z"),
    ]
    assert events.pending[0][1] == f"{refused} (security profile 2)"
    events.link_opened()  # a new streak: reported again
    events.connect_failed(HandshakeRefused("forbidden (HTTP 403)", 403), owner)
    events.connect_failed(TlsFailure("no version", "version"), owner)
    events.connect_failed(TlsFailure("no cipher", "cipher"), owner)
    events.connect_failed(TlsFailure("reset", "other"), owner)
    assert [kind for kind, _, _ in events.pending[2:]] == [
        FAILED_AUTH, "InvalidTLSVersion", "InvalidTLSCipherSuite"
    ]  # fmt: skip


def test_pending_events_are_bounded_and_tech_info_fits_the_schema() -> None:
    events, owner = SecurityEvents(), _Owner()
    for _ in range(security_events.PENDING_MAX + 5):
        events.connect_failed(HandshakeRefused("x" * 400, 401), owner)
        events.link_opened()
    assert len(events.pending) == security_events.PENDING_MAX
    assert all(len(info or "") <= 255 for _, info, _ in events.pending)
    assert not strict_violations(
        "SecurityEventNotification",
        {"type": events.pending[0][0], "timestamp": events.pending[0][2],
         "techInfo": events.pending[0][1]},
        response=False,
    )  # fmt: skip


def _ssl_error(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower()}")
    error.reason = reason
    return error


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "certificate"),
        (_ssl_error("TLSV1_ALERT_PROTOCOL_VERSION"), "version"),
        (_ssl_error("UNSUPPORTED_PROTOCOL"), "version"),
        (_ssl_error("NO_CIPHERS_AVAILABLE"), "cipher"),
        (_ssl_error("SSLV3_ALERT_BAD_CERTIFICATE"), "other"),
    ],
)
def test_tls_failure_kind(error: ssl.SSLError, kind: str) -> None:
    assert tls_failure_kind(error) == kind


def test_the_web_page_hides_a_basic_auth_password() -> None:
    from hilsim.web.frames import HIDDEN, redact

    item = {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"},
            "attributeValue": PASSWORD}  # fmt: skip
    other = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"},
             "attributeValue": "60"}  # fmt: skip
    shown = redact("SetVariables", CALL, [CALL, "1", "SetVariables",
                                          {"setVariableData": [item, other]}])  # fmt: skip
    assert shown[3]["setVariableData"] == [{**item, "attributeValue": HIDDEN}, other]
    assert item["attributeValue"] == PASSWORD  # the frame itself is not changed
