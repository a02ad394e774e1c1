"""Security profiles 1-3 against the built-in CSMS, with certificates made in the test.

Every test that connects also checks that no secret (the password, its hexadecimal form, the
Basic auth token) reached any log record, at DEBUG, of hilsim or of the WebSocket library.
"""

from __future__ import annotations

import asyncio
import logging
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from certs import Issued, issue, make_ca, server_context
from netproxy import Proxy

from hilsim.config import Settings
from hilsim.csms import CentralSystem
from hilsim.errors import ConfigError
from hilsim.security import (
    AuthorizationKeyFile,
    RedactingLogger,
    basic_auth_header,
    password_from_text,
    security_settings,
    url_for_profile,
)

from conftest import CP_ID, make_settings, start_service, stop_service

PASSWORD = "correct horse battery staple"  # a plain password, as a CSMS operator hands it out
HEX_KEY = "00112233445566778899aabbccddeeff0f1e2d3c"  # 20 bytes, as the whitepaper prefers


class LogWatch(logging.Handler):
    """Counts log records containing a phrase; an event tells a test it happened."""

    def __init__(self, phrase: str) -> None:
        super().__init__(logging.DEBUG)
        self.phrase = phrase
        self.count = 0
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.phrase in record.getMessage():
            self.count += 1
            self.seen.set()

    async def wait(self, times: int = 1, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while self.count < times:
                self.seen.clear()
                await self.seen.wait()


@pytest.fixture
def watch() -> Iterator[Any]:
    handlers: list[LogWatch] = []

    def make(phrase: str) -> LogWatch:
        handler = LogWatch(phrase)
        logging.getLogger().addHandler(handler)
        handlers.append(handler)
        return handler

    yield make
    for handler in handlers:
        logging.getLogger().removeHandler(handler)


@pytest.fixture
def pki(short_dir: Path) -> dict[str, Issued]:
    pki_dir = short_dir / "pki"
    pki_dir.mkdir()
    ca = make_ca(pki_dir)
    other = make_ca(pki_dir, "other-ca", "some other CA")
    return {
        "ca": ca,
        "other_ca": other,
        "server": issue(pki_dir, ca, "csms", "csms.test", server=True),
        "client": issue(pki_dir, ca, "cp", CP_ID, server=False),
        "stranger": issue(pki_dir, ca, "stranger", "SOMEONE-ELSE", server=False),
    }


def secure_settings(
    directory: Path,
    url: str,
    profile: int,
    *,
    password: str | None = None,
    version: str = "1.6",
    **files: Path,
) -> Settings:
    """A charge point with a [security] table (the password in a file only it reads)."""
    lines = [f'ocpp_version = "{version}"', "[security]", f"profile = {profile}"]
    if password is not None:
        secret = directory / "password"
        secret.write_text(password + "\n")
        secret.chmod(0o600)
        lines.append(f'password_file = "{secret}"')
    lines += [f'{key} = "{path}"' for key, path in files.items()]
    return make_settings(directory, url, extra_charge_point="\n".join(lines) + "\n")


def assert_no_secret(caplog: pytest.LogCaptureFixture, *secrets: str | bytes) -> None:
    text = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    for secret in secrets:
        shown = secret.decode("latin-1") if isinstance(secret, bytes) else secret
        assert shown not in text, f"a secret reached the log: {shown[:6]}..."
        token = basic_auth_header(CP_ID, secret if isinstance(secret, bytes) else secret.encode())
        assert token.split()[1] not in text


@pytest.fixture(autouse=True)
def debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


@pytest.fixture
async def running() -> AsyncIterator[Any]:
    """Start services; each is stopped at the end, whatever happened."""
    started: list[tuple[Any, asyncio.Task[None]]] = []

    async def start(settings: Settings) -> Any:
        service, task = await start_service(settings)
        started.append((service, task))
        service.test_task = task  # for a test that stops it itself
        return service

    yield start
    for service, task in started:
        await stop_service(service, task)


# -- the pieces -----------------------------------------------------------------------------------


def test_basic_auth_header_with_a_binary_key() -> None:
    """The whitepaper's example: id AL1000, key 0001020304050607FFFFFFFFFFFFFFFFFFFFFFFF."""
    key = password_from_text("0001020304050607FFFFFFFFFFFFFFFFFFFFFFFF")
    assert key == bytes.fromhex("0001020304050607" + "FF" * 12)
    assert basic_auth_header("AL1000", key) == "Basic QUwxMDAwOgABAgMEBQYH////////////////"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HEX_KEY, bytes.fromhex(HEX_KEY)),
        (HEX_KEY.upper() + "\n", bytes.fromhex(HEX_KEY)),
        (PASSWORD, PASSWORD.encode()),
        ("abc123", b"abc123"),  # too short for hexadecimal: the password itself
        ("0" * 33, b"0" * 33),  # odd number of digits: the password itself
    ],
)
def test_password_file_forms(text: str, expected: bytes) -> None:
    assert password_from_text(text) == expected


def test_the_key_file_is_for_the_service_user_only(tmp_path: Path) -> None:
    store = AuthorizationKeyFile(tmp_path / "state" / "authorization_key")
    assert store.load() is None
    store.save(bytes.fromhex(HEX_KEY))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.path.read_text() == HEX_KEY + "\n"
    assert store.load() == bytes.fromhex(HEX_KEY)
    store.path.chmod(0o644)
    store.save(b"\x01" * 16)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("url", "profile", "expected"),
    [
        ("ws://h:9/ocpp/CP", 0, "ws://h:9/ocpp/CP"),
        ("wss://h:9/ocpp/CP", 0, "wss://h:9/ocpp/CP"),
        ("ws://h:9/ocpp/CP", 1, "ws://h:9/ocpp/CP"),
        ("ws://h:9/ocpp/CP", 2, "wss://h:9/ocpp/CP"),
        ("wss://h:9/ocpp/CP", 3, "wss://h:9/ocpp/CP"),
    ],
)
def test_the_profile_decides_the_scheme(url: str, profile: int, expected: str) -> None:
    assert url_for_profile(url, profile) == expected


def test_redacting_logger(caplog: pytest.LogCaptureFixture) -> None:
    log = RedactingLogger(logging.getLogger("websockets.client"), {})
    log.debug("> %s: %s", "Authorization", "Basic c2VjcmV0")
    log.debug("> %s: %s", "Host", "csms.example")
    log.debug("< %s", 'TEXT \'[2,"1","ChangeConfiguration",{"key":"AuthorizationKey","value":"00\'')
    assert "c2VjcmV0" not in caplog.text and '"value":"00' not in caplog.text
    assert "Host: csms.example" in caplog.text


@pytest.mark.parametrize(
    ("table", "url", "key", "expected"),
    [
        ("profile = 4", "ws://h", "security.profile", "expected 0, 1, 2 or 3"),
        ("profile = true", "ws://h", "security.profile", "expected 0, 1, 2 or 3"),
        ("profile = 0\npassword = 'x'", "ws://h", "security.password", "unknown key"),
        ("profile = 1", "ws://h", "security.password_file", "profile 1 needs"),
        ("profile = 2\npassword_file = 'p'", "ws://h", "charge_point.csms_url", "wss://"),
        ("profile = 1\npassword_file = 'p'", "wss://h", "charge_point.csms_url", "ws://"),
        ("profile = 3\nclient_cert = 'c'", "wss://h", "security.client_key", "profile 3"),
        ("profile = 3\nclient_key = 'k'", "wss://h", "security.client_cert", "profile 3"),
        ("profile = 2\npassword_file = ''", "wss://h", "security.password_file", "file name"),
    ],
)
def test_security_table_errors_name_the_key(
    tmp_path: Path, table: str, url: str, key: str, expected: str
) -> None:
    settings = make_settings(tmp_path, url, extra_charge_point=f"[security]\n{table}\n")
    with pytest.raises(ConfigError) as caught:
        security_settings(settings)
    assert caught.value.key == key
    assert expected in caught.value.expected
    assert caught.value.file == str(tmp_path / "hilsim.toml")


def test_relative_files_are_next_to_the_config(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        "wss://h",
        extra_charge_point="[security]\nprofile = 2\npassword_file = 'secret/pw'\n"
        "ca_file = '/etc/ca.pem'\n",
    )
    parsed = security_settings(settings)
    assert parsed.password_file == tmp_path / "secret" / "pw"
    assert parsed.ca_file == Path("/etc/ca.pem")


def test_an_unreadable_password_file_is_a_config_error(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        "ws://127.0.0.1:9",
        extra_charge_point=f"[security]\nprofile = 1\npassword_file = '{tmp_path}/none'\n",
    )
    from hilsim.keys import ConfigurationKeys
    from hilsim.security import ConnectionSecurity, key_file_for

    with pytest.raises(ConfigError, match="cannot read") as caught:
        ConnectionSecurity(
            security_settings(settings),
            ConfigurationKeys({"SecurityProfile": 1}),
            None,  # type: ignore[arg-type]
            CP_ID,
            key_file_for(settings),
        )
    assert caught.value.key == "security.password_file"


# -- profile 1: Basic auth over ws:// ---------------------------------------------------------


async def test_profile_1_connects_with_basic_auth(
    short_dir: Path, running: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with CentralSystem(passwords={CP_ID: PASSWORD}) as csms:
        service = await running(secure_settings(short_dir, csms.url, 1, password=PASSWORD))
        session = await csms.wait_for_charge_point(CP_ID)
        await session.wait_for("BootNotification")
        assert service.charger.snapshot()["csms"]["security"] == {
            "profile": 1,
            "basic_auth": True,
            "client_certificate": False,
            "trying_new_setting": False,
        }
        config = await session.get_configuration(["SecurityProfile", "AuthorizationKey"])
        assert config["configurationKey"] == [
            {"key": "SecurityProfile", "readonly": False, "value": "1"},
            {"key": "AuthorizationKey", "readonly": False},  # write-only: never its value
        ]
        everything = await session.get_configuration()
        entry = next(e for e in everything["configurationKey"] if e["key"] == "AuthorizationKey")
        assert "value" not in entry
        status = await service.command({"cmd": "status"})
        assert PASSWORD not in str(status)
    assert_no_secret(caplog, PASSWORD)


async def test_a_wrong_password_is_refused_and_retried(
    short_dir: Path, running: Any, caplog: pytest.LogCaptureFixture, watch: Any
) -> None:
    refused = watch("HTTP 401")
    async with CentralSystem(passwords={CP_ID: "not the password at all"}) as csms:
        await running(secure_settings(short_dir, csms.url, 1, password=PASSWORD))
        assert await csms.wait_for_refusal() == (CP_ID, "wrong password")
        await refused.wait(times=2)  # the charge point tries again, and does not crash
        assert csms.sessions == {}
        csms.passwords = {CP_ID: PASSWORD}  # the operator fixes it on the CSMS side
        session = await csms.wait_for_charge_point(CP_ID)
        await session.wait_for("BootNotification")
    assert_no_secret(caplog, PASSWORD, "not the password at all")


async def test_the_csms_rotates_the_authorization_key(
    short_dir: Path, running: Any, caplog: pytest.LogCaptureFixture
) -> None:
    new = bytes(range(1, 21))
    async with CentralSystem(passwords={CP_ID: PASSWORD}) as csms:
        settings = secure_settings(short_dir, csms.url, 1, password=PASSWORD)
        service = await running(settings)
        first = await csms.wait_for_charge_point(CP_ID)
        await first.wait_for("BootNotification")
        csms.passwords[CP_ID] = new  # what the CSMS will check from the next handshake on
        assert await first.change_configuration("AuthorizationKey", new.hex()) == "Accepted"
        second = await csms.wait_for_charge_point(CP_ID)  # it connected again, with the new key
        await second.wait_for("BootNotification")
        key_file = short_dir / "authorization_key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert key_file.read_text().strip() == new.hex()
        assert await second.change_configuration("AuthorizationKey", "00" * 15) == "Rejected"
        assert await second.change_configuration("AuthorizationKey", "") == "Rejected"
        # The store never saw it: a diagnostics archive (the database) cannot leak it.
        assert "AuthorizationKey" not in await service.store.load_keys()
        await stop_service(service, service.test_task)
        await running(settings)  # the new key survives a restart
        third = await csms.wait_for_charge_point(CP_ID)
        await third.wait_for("BootNotification")
    assert_no_secret(caplog, PASSWORD, new, new.hex())


async def test_a_new_key_the_csms_refuses_falls_back_to_the_old_one(
    short_dir: Path, running: Any, caplog: pytest.LogCaptureFixture, watch: Any
) -> None:
    fell_back = watch("falling back")
    new = bytes(range(100, 120))
    async with CentralSystem(passwords={CP_ID: PASSWORD}) as csms:
        await running(secure_settings(short_dir, csms.url, 1, password=PASSWORD))
        first = await csms.wait_for_charge_point(CP_ID)
        await first.wait_for("BootNotification")
        assert await first.change_configuration("AuthorizationKey", new.hex()) == "Accepted"
        await fell_back.wait()
        again = await csms.wait_for_charge_point(CP_ID)  # with the old key
        await again.wait_for("BootNotification")
        assert len(csms.refusals) == 3
        assert (short_dir / "authorization_key").read_text().strip() == PASSWORD.encode().hex()
    assert_no_secret(caplog, PASSWORD, new, new.hex())


# -- profile 2: TLS and Basic auth -------------------------------------------------------------


async def test_profile_2_tls_with_basic_auth(
    short_dir: Path, running: Any, pki: dict[str, Issued], caplog: pytest.LogCaptureFixture
) -> None:
    key = bytes.fromhex(HEX_KEY)
    async with CentralSystem(
        ssl_context=server_context(pki["server"]), passwords={CP_ID: key}
    ) as csms:
        assert csms.url.startswith("wss://")
        settings = secure_settings(short_dir, csms.url, 2, password=HEX_KEY, ca_file=pki["ca"].cert)
        service = await running(settings)
        session = await csms.wait_for_charge_point(CP_ID)
        await session.wait_for("BootNotification")
        assert service.charger.snapshot()["csms"]["security"]["profile"] == 2
        # Going down is not allowed; profile 3 without a client certificate neither.
        assert await session.change_configuration("SecurityProfile", "1") == "Rejected"
        assert await session.change_configuration("SecurityProfile", "0") == "Rejected"
        assert await session.change_configuration("SecurityProfile", "3") == "Rejected"
        assert await session.change_configuration("SecurityProfile", "2") == "Accepted"
    assert_no_secret(caplog, key, HEX_KEY)


async def test_profile_2_refuses_a_csms_certificate_from_another_ca(
    short_dir: Path, running: Any, pki: dict[str, Issued], watch: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    failed = watch("TLS handshake failed")
    async with CentralSystem(
        ssl_context=server_context(pki["server"]), passwords={CP_ID: PASSWORD}
    ) as csms:
        settings = secure_settings(
            short_dir, csms.url, 2, password=PASSWORD, ca_file=pki["other_ca"].cert
        )
        service = await running(settings)
        await failed.wait(times=2)  # refused, tried again, refused again: no crash
        assert csms.sessions == {} and csms.refusals == []  # no password was ever sent
        assert service.link.state != "connected"
        assert "unable to get local issuer certificate" in caplog.text
    assert_no_secret(caplog, PASSWORD)


async def test_a_bad_ca_file_fails_the_start(short_dir: Path, running: Any) -> None:
    bad = short_dir / "bad.pem"
    bad.write_text("not a certificate\n")
    settings = secure_settings(short_dir, "wss://127.0.0.1:9", 2, password=PASSWORD, ca_file=bad)
    with pytest.raises(ConfigError) as caught:
        await running(settings)
    assert caught.value.key == "security.ca_file"


# -- profile 3: a client certificate ----------------------------------------------------------


async def test_profile_3_client_certificate(
    short_dir: Path, running: Any, pki: dict[str, Issued]
) -> None:
    context = server_context(pki["server"], client_ca=pki["ca"])
    async with CentralSystem(ssl_context=context) as csms:
        settings = secure_settings(
            short_dir,
            csms.url,
            3,
            ca_file=pki["ca"].cert,
            client_cert=pki["client"].cert,
            client_key=pki["client"].key,
        )
        service = await running(settings)
        session = await csms.wait_for_charge_point(CP_ID)
        await session.wait_for("BootNotification")
        assert service.charger.snapshot()["csms"]["security"]["client_certificate"] is True


async def test_profile_3_refuses_another_charge_points_certificate(
    short_dir: Path, running: Any, pki: dict[str, Issued], watch: Any
) -> None:
    refused = watch("HTTP 401")
    context = server_context(pki["server"], client_ca=pki["ca"])
    async with CentralSystem(ssl_context=context) as csms:
        settings = secure_settings(
            short_dir,
            csms.url,
            3,
            ca_file=pki["ca"].cert,
            client_cert=pki["stranger"].cert,
            client_key=pki["stranger"].key,
        )
        await running(settings)
        charge_point, why = await csms.wait_for_refusal()
        assert charge_point == CP_ID and "SOMEONE-ELSE" in why
        await refused.wait(times=2)
        assert csms.sessions == {}


# -- changing the profile: upgrade, and falling back ---------------------------------------------


async def test_upgrade_from_profile_1_to_2(
    short_dir: Path, running: Any, pki: dict[str, Issued], caplog: pytest.LogCaptureFixture
) -> None:
    """The CSMS moves the charge point to TLS: same host and port, now wss://."""
    plain = CentralSystem(passwords={CP_ID: PASSWORD})
    tls = CentralSystem(ssl_context=server_context(pki["server"]), passwords={CP_ID: PASSWORD})
    async with plain, tls, Proxy(plain.port) as proxy:
        url = f"ws://127.0.0.1:{proxy.port}"
        service = await running(
            secure_settings(short_dir, url, 1, password=PASSWORD, ca_file=pki["ca"].cert)
        )
        first = await plain.wait_for_charge_point(CP_ID)
        await first.wait_for("BootNotification")
        proxy.target_port = tls.port  # the CSMS's port now speaks TLS
        assert await first.change_configuration("SecurityProfile", "2") == "Accepted"
        upgraded = await tls.wait_for_charge_point(CP_ID)
        await upgraded.wait_for("BootNotification")
        config = await upgraded.get_configuration(["SecurityProfile"])
        assert config["configurationKey"][0]["value"] == "2"
        assert service.charger.snapshot()["csms"]["security"]["trying_new_setting"] is False
        assert (await service.store.load_keys())["SecurityProfile"] == "2"
    assert_no_secret(caplog, PASSWORD)


async def test_a_profile_the_csms_cannot_speak_falls_back(
    short_dir: Path, running: Any, pki: dict[str, Issued], watch: Any
) -> None:
    fell_back = watch("falling back to profile 1")
    async with CentralSystem(passwords={CP_ID: PASSWORD}) as csms:
        service = await running(
            secure_settings(short_dir, csms.url, 1, password=PASSWORD, ca_file=pki["ca"].cert)
        )
        first = await csms.wait_for_charge_point(CP_ID)
        await first.wait_for("BootNotification")
        assert await first.change_configuration("SecurityProfile", "2") == "Accepted"
        await fell_back.wait()
        again = await csms.wait_for_charge_point(CP_ID)
        await again.wait_for("BootNotification")
        config = await again.get_configuration(["SecurityProfile"])
        assert config["configurationKey"][0]["value"] == "1"
        assert service.charger.snapshot()["csms"]["security"]["profile"] == 1


# -- the built-in CSMS's command line options ------------------------------------------------


def test_csms_security_options(tmp_path: Path, pki: dict[str, Issued]) -> None:
    from hilsim.csms.server import security_options
    from hilsim.errors import CsmsError

    secret = tmp_path / "pw"
    secret.write_text(HEX_KEY + "\n")
    context, passwords = security_options(
        pki["server"].cert, pki["server"].key, pki["ca"].cert, [f"{CP_ID}={secret}"]
    )
    assert context is not None and context.verify_mode.name == "CERT_REQUIRED"
    assert passwords == {CP_ID: bytes.fromhex(HEX_KEY)}
    assert security_options(None, None, None, []) == (None, None)
    with pytest.raises(CsmsError, match="go together"):
        security_options(pki["server"].cert, None, None, [])
    with pytest.raises(CsmsError, match="CHARGE_POINT_ID=FILE"):
        security_options(None, None, None, ["no-equals-sign"])
    with pytest.raises(CsmsError, match="cannot read"):
        security_options(None, None, None, [f"{CP_ID}={tmp_path}/missing"])
