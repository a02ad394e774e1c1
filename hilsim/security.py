"""Security profiles 0-3 of the OCPP 1.6 Security Whitepaper (edition 3) on the charge point.

profile 0: ws:// (or wss:// as configured), no authentication;
profile 1: ws://, HTTP Basic auth (user: the charge point id, password: the AuthorizationKey);
profile 2: wss://, Basic auth, the CSMS certificate checked against [security] ca_file (else the
           system's CA store);
profile 3: wss://, a client certificate ([security] client_cert and client_key) instead of Basic.

The AuthorizationKey is a secret: write-only over OCPP (GetConfiguration lists it without a
value), never logged, never in SQLite (so never in a diagnostics archive), kept in a file only
the service user can read (``authorization_key`` beside the database; until the CSMS sets one,
[security] password_file holds it). On the wire it travels as hexadecimal (ChangeConfiguration);
in the Basic auth header it is the bytes that hexadecimal stands for, as the whitepaper's
errata and the OCA test tool say. A password_file may hold either form: 32 to 80 hexadecimal
digits are read as the bytes they stand for, anything else as the password's own UTF-8 bytes.

Changing SecurityProfile or AuthorizationKey makes the charge point connect again with the new
setting once its answer is on the wire. A profile may only go up (there is no
AllowSecurityProfileDowngrade here), and only to one whose credentials are configured. When the
new setting fails to connect `FALLBACK_AFTER` times in a row, the charge point goes back to the
one that worked, as the whitepaper says, and logs why.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import ssl
import stat
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from hilsim.errors import ConfigError, CsmsError
from hilsim.tasks import TaskSet

if TYPE_CHECKING:
    from hilsim.config import Settings

log = logging.getLogger(__name__)

#: A configuration key's value (`hilsim.keys.Value`): the link, the keys and the store import
#: this module, so it names what it needs of them as Protocols instead of importing them.
Value = int | bool | float | str


class SecurityKeys(Protocol):
    """What the security rules need of the configuration keys (`ConfigurationKeys`)."""

    def get(self, name: str) -> Any: ...
    def load(self, name: str, value: Any) -> None: ...
    def guard(self, name: str, check: Callable[[Any], str | None]) -> None: ...
    def keep_with(self, name: str, save: Callable[[Any], Awaitable[None]]) -> None: ...
    def subscribe(self, listener: Callable[[Any, Any], None]) -> Callable[[], None]: ...


class KeySaver(Protocol):
    """Where a key the fallback puts back is persisted (`Store`)."""

    async def save_key(self, name: str, text: str) -> None: ...

PROFILES = (0, 1, 2, 3)
#: Failed connections in a row with a new profile or key before going back to the old one.
FALLBACK_AFTER = 3
KEY_FILE_NAME = "authorization_key"
_KEYS = ("profile", "password_file", "ca_file", "client_cert", "client_key")
_HEX_KEY = re.compile(r"(?:[0-9A-Fa-f]{2}){16,40}")
_REDACTED = "(redacted: it carries a secret)"


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    """The [security] table, validated."""

    profile: int = 0
    password_file: Path | None = None
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    source: str = ""


def security_settings(settings: Settings) -> SecuritySettings:
    """Parse [security] from the settings' raw TOML; ConfigError names the file and the key."""
    source = settings.source
    table = settings.raw.get("security")
    if table is None:
        result = SecuritySettings(source=source)
    else:
        if not isinstance(table, Mapping):
            raise ConfigError(source, "security", "expected a [security] table")
        for key in table:
            if key not in _KEYS:
                raise ConfigError(
                    source, f"security.{key}", f"unknown key; known keys are: {', '.join(_KEYS)}"
                )
        profile = table.get("profile", 0)
        if isinstance(profile, bool) or profile not in PROFILES:
            raise ConfigError(source, "security.profile", f"expected 0, 1, 2 or 3, got {profile!r}")
        base = _base_dir(source)
        paths = {key: _path(source, table, key, base) for key in _KEYS[1:]}
        result = SecuritySettings(profile=int(profile), source=source, **paths)
    _check_combination(result, settings.charge_point.csms_url)
    return result


def _base_dir(source: str) -> Path:
    path = Path(source)
    return path.parent if path.suffix else Path.cwd()


def _path(source: str, table: Mapping[str, Any], key: str, base: Path) -> Path | None:
    if key not in table:
        return None
    value = table[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(source, f"security.{key}", f"expected a file name, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _check_combination(s: SecuritySettings, url: str) -> None:
    scheme = urlsplit(url).scheme
    if s.profile in (1, 2) and s.password_file is None:
        raise ConfigError(
            s.source,
            "security.password_file",
            f"missing; security profile {s.profile} needs the file holding the AuthorizationKey",
        )
    if s.profile == 3 and (s.client_cert is None or s.client_key is None):
        missing = "client_cert" if s.client_cert is None else "client_key"
        raise ConfigError(
            s.source,
            f"security.{missing}",
            "missing; security profile 3 needs a client certificate and its key",
        )
    if s.profile >= 2 and scheme != "wss":
        raise ConfigError(
            s.source,
            "charge_point.csms_url",
            f"expected a wss:// URL for security profile {s.profile} (no password or "
            f"certificate is ever sent without TLS), got {url!r}",
        )
    if s.profile == 1 and scheme != "ws":
        raise ConfigError(
            s.source,
            "charge_point.csms_url",
            f"expected a ws:// URL for security profile 1 (Basic auth without TLS; use profile 2 "
            f"for wss://), got {url!r}",
        )


# -- secrets --------------------------------------------------------------------------------


def password_from_text(text: str) -> bytes:
    """A password_file's content: hexadecimal (32-80 digits) is the bytes it stands for."""
    text = text.strip()
    if _HEX_KEY.fullmatch(text):
        return bytes.fromhex(text)
    return text.encode("utf-8")


def read_secret_file(path: Path, source: str, key: str) -> bytes:
    """Read a secret, warning when others than the service user may read it too."""
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(
            source, key, f"cannot read {path}: {exc.strerror or exc}; expected a readable file"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s (%s) may be read by others than the service user; chmod 600 it", path, key)
    return data


def basic_auth_header(charge_point_id: str, password: bytes) -> str:
    """Authorization header value: the charge point id is the user name (whitepaper 2.2)."""
    token = base64.b64encode(charge_point_id.encode("utf-8") + b":" + password).decode("ascii")
    return f"Basic {token}"


class AuthorizationKeyFile:
    """The AuthorizationKey the CSMS set, as hexadecimal, in a file only its owner can read."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> bytes | None:
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            log.error("cannot read %s (%s); using [security] password_file", self.path, exc)
            return None
        if not _HEX_KEY.fullmatch(text):
            log.error("%s does not hold a valid key; using [security] password_file", self.path)
            return None
        return bytes.fromhex(text)

    def save(self, password: bytes) -> None:
        """Atomically replace the file (mode 0600, fsynced), so a power cut leaves old or new."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.new")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file that was there
            os.write(fd, password.hex().encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)


#: Names of the secret, in lower case: the 1.6 key, and OCPP 2.0.1's SecurityCtrlr variable that
#: is the same password (a SetVariables frame carries it in clear).
SECRET_NAMES = ("authorizationkey", "basicauthpassword")


def carries_secret(text: str) -> bool:
    """Whether text names the AuthorizationKey or BasicAuthPassword, in any case (a key name is
    a CiString50)."""
    folded = text.casefold()
    return any(name in folded for name in SECRET_NAMES)


def redact(text: str) -> str:
    """A log argument that carries a secret (a Basic auth header, a frame setting the
    AuthorizationKey, its name spelt in any case) becomes a placeholder; anything else is
    returned as it is."""
    if carries_secret(text) or text.startswith("Basic ") or "Authorization:" in text:
        return _REDACTED
    return text


class RedactingLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger for a WebSocket library that logs handshake headers and frames at DEBUG."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        message = str(msg)
        if carries_secret(message):
            message = _REDACTED
        cleaned = tuple(redact(a) if isinstance(a, str) else _redact_other(a) for a in args)
        if message.startswith("> %s: %s") and cleaned and cleaned[0] == "Authorization":
            cleaned = ("Authorization", _REDACTED, *cleaned[2:])
        kwargs.setdefault("stacklevel", 3)  # the record names the library's line, not this one
        self.logger.log(level, message, *cleaned, **kwargs)


def _redact_other(value: object) -> object:
    # A websockets Frame shows only the ends of its payload: look at all of it.
    data = getattr(value, "data", None)
    if isinstance(data, bytes | bytearray | memoryview) and any(
        name.encode() in bytes(data).lower() for name in SECRET_NAMES
    ):
        return _REDACTED
    return _REDACTED if carries_secret(str(value)) else value


# -- TLS ----------------------------------------------------------------------------------------


def client_ssl_context(s: SecuritySettings, profile: int) -> ssl.SSLContext:
    """TLS 1.2 or later, the CSMS certificate checked against ca_file (else the system's CAs),
    and for profile 3 the client certificate. ConfigError for a file that does not load."""
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=None if s.ca_file is None else str(s.ca_file)
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            s.source, "security.ca_file", f"cannot load {s.ca_file}: {exc}; expected PEM CA"
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if profile == 3 or (s.client_cert is not None and s.client_key is not None):
        if s.client_cert is None or s.client_key is None:
            raise ConfigError(
                s.source, "security.client_cert", "missing; profile 3 needs a client certificate"
            )
        if s.client_key.exists():
            read_secret_file(s.client_key, s.source, "security.client_key")  # warns if exposed
        try:
            context.load_cert_chain(str(s.client_cert), str(s.client_key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                s.source,
                "security.client_cert",
                f"cannot load {s.client_cert} with {s.client_key}: {exc}; expected a PEM "
                "certificate and its private key",
            ) from None
    return context


def url_for_profile(url: str, profile: int) -> str:
    """Profiles 2-3 speak wss://, profile 1 ws://, profile 0 whatever was configured."""
    parts = urlsplit(url)
    scheme = "wss" if profile >= 2 else "ws" if profile == 1 else parts.scheme
    return urlunsplit((scheme, *parts[1:]))


# -- the running charge point -------------------------------------------------------------------


class ConnectionSecurity:
    """What `CsmsLink` connects with, and the rules for changing it."""

    def __init__(
        self,
        settings: SecuritySettings,
        keys: SecurityKeys,
        store: KeySaver,
        charge_point_id: str,
        key_file: AuthorizationKeyFile,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.store = store
        self.charge_point_id = charge_point_id
        self.key_file = key_file
        self._password = self._initial_password()
        self._contexts: dict[int, ssl.SSLContext] = {}
        # What last connected (or what we started with): the fallback of a failing change.
        self._good_profile = self.profile
        self._good_password = self._password
        #: failed connections since a change of profile or key; None: no change on probation
        self._failures: int | None = None
        self._reconnect_due = False
        self._tasks = TaskSet("security")
        keys.guard("SecurityProfile", self._profile_allowed)
        keys.guard("AuthorizationKey", self._key_allowed)
        keys.keep_with("AuthorizationKey", self._save_key)
        keys.subscribe(self._key_changed)
        if self.profile >= 2 or settings.ca_file is not None or settings.client_cert is not None:
            self._context(self.profile)  # a certificate that does not load fails the start

    @property
    def profile(self) -> int:
        return int(self.keys.get("SecurityProfile"))

    def _initial_password(self) -> bytes | None:
        stored = self.key_file.load()
        if stored is not None:
            log.info("AuthorizationKey: the one the CSMS set (%s)", self.key_file.path)
            return stored
        path = self.settings.password_file
        if path is None:
            return None
        raw = read_secret_file(path, self.settings.source, "security.password_file")
        try:
            password = password_from_text(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(
                self.settings.source, "security.password_file", f"expected text in {path}"
            ) from None
        if not password:
            raise ConfigError(
                self.settings.source, "security.password_file", f"expected a password in {path}"
            )
        if len(password) < 16:
            log.warning("the password in %s is shorter than the whitepaper's 16 bytes", path)
        return password

    def _context(self, profile: int) -> ssl.SSLContext:
        if profile not in self._contexts:
            self._contexts[profile] = client_ssl_context(self.settings, profile)
        return self._contexts[profile]

    # -- for CsmsLink -----------------------------------------------------------------------

    def connection(self, endpoint: str) -> tuple[str, dict[str, Any]]:
        """The URL to dial and open_link's options (Basic auth header, TLS context)."""
        profile = self.profile
        url = url_for_profile(endpoint, profile)
        options: dict[str, Any] = {}
        if profile in (1, 2):
            if self._password is None:
                raise CsmsError(f"security profile {profile} needs an AuthorizationKey")
            options["headers"] = {
                "Authorization": basic_auth_header(self.charge_point_id, self._password)
            }
        if urlsplit(url).scheme == "wss":
            try:
                options["ssl"] = self._context(profile)
            except ConfigError as exc:
                raise CsmsError(f"security profile {profile}: {exc}") from None
        return url, options

    def connected(self) -> None:
        if self._failures is not None:
            log.info("connected with security profile %d: the new setting is kept", self.profile)
        self._failures = None
        self._good_profile, self._good_password = self.profile, self._password

    def connection_failed(self, error: Exception) -> None:
        if self._failures is None:
            return
        self._failures += 1
        if self._failures < FALLBACK_AFTER:
            return
        log.error(
            "security profile %d failed %d times in a row (%s); falling back to profile %d and "
            "the AuthorizationKey that last worked, as the security whitepaper says",
            self.profile,
            self._failures,
            error,
            self._good_profile,
        )
        self._failures = None
        if self._good_profile != self.profile:
            self.keys.load("SecurityProfile", self._good_profile)
            self._tasks.spawn(
                self.store.save_key("SecurityProfile", str(self._good_profile)), "save-profile"
            )
        if self._good_password != self._password:
            self._password = self._good_password
            if self._password is not None:
                try:
                    self.key_file.save(self._password)
                except OSError as exc:  # in use now; a restart would read the newer one
                    log.error("cannot write %s back (%s)", self.key_file.path, exc)

    # -- ChangeConfiguration ----------------------------------------------------------------

    def _profile_allowed(self, value: Value) -> str | None:
        wanted, current = int(value), self.profile
        if wanted < current:
            return f"going down from profile {current} to {wanted} is not allowed"
        if wanted in (1, 2) and self._password is None:
            return f"profile {wanted} needs an AuthorizationKey, and none is set"
        if wanted == 3 and (self.settings.client_cert is None or self.settings.client_key is None):
            return "profile 3 needs [security] client_cert and client_key"
        if wanted >= 2:
            try:
                self._context(wanted)
            except ConfigError as exc:
                return str(exc)
        return None

    def _key_allowed(self, value: Value) -> str | None:
        return "an empty AuthorizationKey is not allowed" if not value else None

    async def _save_key(self, value: Value) -> None:
        """Persist a new AuthorizationKey before it is used or Accepted (an OSError: Rejected)."""
        await asyncio.to_thread(self.key_file.save, bytes.fromhex(str(value)))

    def _key_changed(self, spec: Any, value: Value) -> None:
        if spec.name == "AuthorizationKey":
            self._password = bytes.fromhex(str(value))  # saved by _save_key already
            log.info("AuthorizationKey changed by the CSMS (kept in %s)", self.key_file.path)
            if self.profile in (1, 2):
                self._on_probation()
        elif spec.name == "SecurityProfile" and int(value) != self._good_profile:
            log.warning("SecurityProfile changed to %s: connecting again with it", value)
            self._on_probation()

    def _on_probation(self) -> None:
        self._failures = 0
        self._reconnect_due = True

    def take_reconnect(self) -> bool:
        """Whether the last ChangeConfiguration asks to connect again (asked once: the link
        calls this when that answer is on the wire, and reconnects on True)."""
        due, self._reconnect_due = self._reconnect_due, False
        return due

    def snapshot(self) -> dict[str, Any]:
        """For `hilsim ctl status`: never a secret, only what is in use."""
        profile = self.profile
        return {
            "profile": profile,
            "basic_auth": profile in (1, 2),
            "client_certificate": profile == 3,
            "trying_new_setting": self._failures is not None,
        }


def key_file_for(settings: Settings) -> AuthorizationKeyFile:
    """Where the AuthorizationKey the CSMS set is kept: beside the database."""
    return AuthorizationKeyFile(settings.storage.database.parent / KEY_FILE_NAME)
