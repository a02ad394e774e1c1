"""The password that unlocks the page's buttons: compared in constant time, guessing rate limited.

A demo hall's Wi-Fi is shared with strangers. The read-only view may be open to all of them, but
pressing a virtual button must not be, and a password must not be guessable by trying: after a
few wrong ones from an address, that address is refused for a while without even comparing.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: Wrong passwords allowed per client address within WINDOW_S before it is refused.
FAILURES_ALLOWED = 5
WINDOW_S = 60.0
#: Addresses tracked at once; the stalest is forgotten first (a flood cannot grow memory).
_ADDRESSES_KEPT = 1024


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    error: str | None = None
    retry_after_s: float | None = None


class Guard:
    """Checks passwords for one server; `password` None means buttons are off altogether."""

    def __init__(
        self,
        password: str | None,
        *,
        failures_allowed: int = FAILURES_ALLOWED,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Compared as digests: equal lengths, so not even the password's length leaks.
        self._digest = None if password is None else _digest(password)
        self.failures_allowed = failures_allowed
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    @property
    def enabled(self) -> bool:
        return self._digest is not None

    def check(self, address: str, attempt: object) -> Verdict:
        if self._digest is None:
            return Verdict(False, "the buttons are off: no [web] password in the config")
        now = self.clock()
        failures = self._recent(address, now)
        if len(failures) >= self.failures_allowed:
            wait = max(1.0, failures[0] + self.window_s - now)
            return Verdict(
                False,
                f"too many wrong passwords from {address}; try again in {wait:.0f} s",
                wait,
            )
        given = attempt if isinstance(attempt, str) else ""
        if hmac.compare_digest(_digest(given), self._digest):
            self._failures.pop(address, None)
            return Verdict(True)
        self._fail(address, now)
        log.warning("web: wrong password from %s", address)
        return Verdict(False, "wrong password")

    def _recent(self, address: str, now: float) -> deque[float]:
        failures = self._failures.get(address)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[address]
        return failures

    def _fail(self, address: str, now: float) -> None:
        failures = self._failures.pop(address, None) or deque(maxlen=self.failures_allowed)
        failures.append(now)
        self._failures[address] = failures  # re-inserted: the dict's order is staleness
        while len(self._failures) > _ADDRESSES_KEPT:
            self._failures.pop(next(iter(self._failures)))


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
