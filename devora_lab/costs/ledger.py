"""Where budgets keep their running totals: in this process, or in Redis for many processes.

A ledger holds one *account* per budget, period and key (``"global"``, ``"user=alice"``):
money ``spent`` and money ``reserved`` by calls in flight, both in integer micro-dollars so
that thousands of additions never drift the way float dollars do. Every operation that
must not interleave with another process (check-then-reserve, seed-once, fire-a-threshold-
once) is a single atomic step: under a ``threading.Lock`` in ``LocalLedger``, one Lua
``EVAL`` or one ``HSETNX`` in ``RedisLedger``.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol, TypeVar

from devora_lab.errors import CacheUnavailableError, ConfigError

if TYPE_CHECKING:
    import redis

__all__ = [
    "DEFAULT_URL",
    "MICROS_PER_USD",
    "Account",
    "Ledger",
    "LocalLedger",
    "RedisLedger",
    "Reservation",
    "redact_url",
    "to_micros",
    "to_usd",
]

DEFAULT_URL: Final = "redis://127.0.0.1:6379/0"
DEFAULT_KEEP_AFTER_END_S: Final = 7 * 86_400  # keep a finished period for reports a week
MICROS_PER_USD: Final = 1_000_000
_T = TypeVar("_T")
_USERINFO: Final = re.compile(r"(?<=://)[^/@\s]*@")


def to_micros(usd: float, *, up: bool = True) -> int:
    """US dollars as whole micro-dollars, rounded up (costs) or down (limits, ``up=False``):
    rounding must never favour spending. The inner round() drops float noise
    (0.07 * 1e6 == 70000.00000000001), which would otherwise cost a spurious micro-dollar."""
    scaled = round(usd * MICROS_PER_USD, 6)
    return math.ceil(scaled) if up else math.floor(scaled)


def to_usd(micros: int) -> float:
    return micros / MICROS_PER_USD


class Account(NamedTuple):
    """One running total: a budget's name, the period's label and the scope key."""

    budget: str
    period: str  # e.g. "daily-2025-03-09": the period and its local start date
    key: str  # "global", "user=alice", "tag:team=search", ...


@dataclass(frozen=True, slots=True)
class Reservation:
    """The answer to ``Ledger.reserve``: whether it was accepted and the totals it saw.

    ``reserved`` includes this reservation when accepted and excludes it when refused.
    """

    accepted: bool
    spent: int
    reserved: int


class Ledger(Protocol):
    """Atomic running totals in micro-dollars; ``period_end`` (POSIX seconds) says when an
    account may be forgotten, after the ledger's own grace time."""

    def reserve(self, account: Account, amount: int, limit: int | None,
                period_end: float) -> Reservation:
        """Add ``amount`` to reserved unless spent + reserved + amount > ``limit``."""
        ...

    def settle(self, account: Account, reserved: int, actual: int, period_end: float) -> int:
        """Move a reservation to spent at its real cost; returns spent afterwards."""
        ...

    def release(self, account: Account, amount: int) -> None:
        """Drop a reservation of ``amount`` (never below zero)."""
        ...

    def seed(self, account: Account, spent: int, period_end: float) -> bool:
        """Add history's ``spent`` once per account; False if it was already seeded."""
        ...

    def is_seeded(self, account: Account) -> bool: ...

    def claim_threshold(self, account: Account, threshold: float, period_end: float) -> bool:
        """True for exactly one caller per account and threshold."""
        ...

    def balance(self, account: Account) -> tuple[int, int]:
        """(spent, reserved) now."""
        ...

    def keys(self, budget: str, period: str) -> list[str]:
        """The keys that have an account for this budget and period."""
        ...

    def close(self) -> None: ...


# -- in this process ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    expires: float
    spent: int = 0
    reserved: int = 0
    seeded: bool = False
    claimed: set[float] = field(default_factory=set)


class LocalLedger:
    """Totals in a dict under one lock: exact for the threads of one process, invisible to
    any other process (use ``RedisLedger`` when several processes share a budget).

    Accounts are forgotten ``keep_after_end_s`` after their period ends, by ``clock`` (POSIX
    seconds): give it the guard's clock when simulating time, or they vanish at once.
    """

    def __init__(self, *, keep_after_end_s: float = DEFAULT_KEEP_AFTER_END_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.keep_after_end_s = keep_after_end_s
        self._clock = clock
        self._entries: dict[Account, _Entry] = {}
        self._lock = threading.Lock()

    def _entry(self, account: Account, period_end: float) -> _Entry:
        """The account's entry, created (and old ones dropped) on first use; lock held."""
        entry = self._entries.get(account)
        if entry is None:
            self._forget_expired()
            entry = _Entry(expires=period_end + self.keep_after_end_s)
            self._entries[account] = entry
        return entry

    def _forget_expired(self) -> None:
        now = self._clock()
        for account in [a for a, e in self._entries.items() if e.expires < now]:
            del self._entries[account]

    def reserve(self, account: Account, amount: int, limit: int | None,
                period_end: float) -> Reservation:
        with self._lock:
            entry = self._entry(account, period_end)
            if limit is not None and entry.spent + entry.reserved + amount > limit:
                return Reservation(False, entry.spent, entry.reserved)
            entry.reserved += amount
            return Reservation(True, entry.spent, entry.reserved)

    def settle(self, account: Account, reserved: int, actual: int, period_end: float) -> int:
        with self._lock:
            entry = self._entry(account, period_end)
            entry.reserved = max(0, entry.reserved - reserved)
            entry.spent += actual
            return entry.spent

    def release(self, account: Account, amount: int) -> None:
        with self._lock:
            entry = self._entries.get(account)
            if entry is not None:
                entry.reserved = max(0, entry.reserved - amount)

    def seed(self, account: Account, spent: int, period_end: float) -> bool:
        with self._lock:
            entry = self._entry(account, period_end)
            if entry.seeded:
                return False
            entry.seeded = True
            entry.spent += spent
            return True

    def is_seeded(self, account: Account) -> bool:
        with self._lock:
            entry = self._entries.get(account)
            return entry is not None and entry.seeded

    def claim_threshold(self, account: Account, threshold: float, period_end: float) -> bool:
        with self._lock:
            entry = self._entry(account, period_end)
            if threshold in entry.claimed:
                return False
            entry.claimed.add(threshold)
            return True

    def balance(self, account: Account) -> tuple[int, int]:
        with self._lock:
            entry = self._entries.get(account)
            return (0, 0) if entry is None else (entry.spent, entry.reserved)

    def keys(self, budget: str, period: str) -> list[str]:
        with self._lock:
            return sorted(a.key for a in self._entries if a.budget == budget and a.period == period)

    def close(self) -> None:
        """Nothing to close; present so that every ledger can be closed alike."""


# -- in Redis ------------------------------------------------------------------------------------

# One hash per account (fields spent, reserved, seeded, t:<threshold>) and one set per budget
# and period listing its keys. Amounts reach HINCRBY as the strings Python sent (negated
# there): Lua would print a big number as 1e+15, which HINCRBY rejects. Comparisons use Lua
# doubles, exact for integers below 2**53 micro-dollars ($9 billion).
_RESERVE: Final = """
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
local amount = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if limit >= 0 and spent + reserved + amount > limit then
  return {0, spent, reserved}
end
reserved = redis.call('HINCRBY', KEYS[1], 'reserved', ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[4])
redis.call('PEXPIREAT', KEYS[2], ARGV[3])
return {1, spent, reserved}
"""

_SETTLE: Final = """
local reserved = redis.call('HINCRBY', KEYS[1], 'reserved', ARGV[1])
if reserved < 0 then redis.call('HSET', KEYS[1], 'reserved', 0) end
local spent = redis.call('HINCRBY', KEYS[1], 'spent', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[4])
redis.call('PEXPIREAT', KEYS[2], ARGV[3])
return spent
"""

_RELEASE: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local reserved = redis.call('HINCRBY', KEYS[1], 'reserved', ARGV[1])
if reserved < 0 then redis.call('HSET', KEYS[1], 'reserved', 0) end
return 1
"""

_SEED: Final = """
if redis.call('HSETNX', KEYS[1], 'seeded', 1) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'spent', ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('PEXPIREAT', KEYS[2], ARGV[2])
return 1
"""

_CLAIM: Final = """
if redis.call('HSETNX', KEYS[1], ARGV[1], 1) == 0 then return 0 end
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1
"""


class RedisLedger:
    """Totals in Redis, shared by every process that reaches the server.

    Each step is one ``EVAL`` (a registered script, sent as ``EVALSHA``), so a reservation
    checks the limit and adds itself with no other client in between. Keys are
    ``<prefix>{<budget>|<period>}a:<key>`` (hash) and ``<prefix>{<budget>|<period>}i`` (set
    of keys); the braces keep a period's keys in one Redis Cluster slot. They expire
    ``keep_after_end_s`` after the period ends.

    Pass a URL or a ``redis.Redis``. redis-py's retries are turned off for a client made here:
    a retried ``EVAL`` whose first answer was lost would count a reservation or a cost twice.
    An unreachable server raises ``CacheUnavailableError`` (the URL without its password).
    """

    def __init__(self, url: str | redis.Redis = DEFAULT_URL, *, prefix: str = "devora:budget:",
                 timeout: float = 2.0,
                 keep_after_end_s: float = DEFAULT_KEEP_AFTER_END_S) -> None:
        redis_module = _import_redis()
        if not isinstance(prefix, str):
            raise ConfigError(f"the Redis key prefix must be a str, not {prefix!r}",
                              fix='pass prefix="devora:budget:" or another string')
        self.prefix = prefix
        self.keep_after_end_s = keep_after_end_s
        self._errors: type[Exception] = redis_module.RedisError
        self._owns_client = isinstance(url, str)
        self._client: redis.Redis = (_client_from_url(url, timeout) if isinstance(url, str)
                                     else url)
        self._scripts = {name: self._client.register_script(source) for name, source in (
            ("reserve", _RESERVE), ("settle", _SETTLE), ("release", _RELEASE),
            ("seed", _SEED), ("claim", _CLAIM))}

    # -- the Ledger protocol -------------------------------------------------------------

    def reserve(self, account: Account, amount: int, limit: int | None,
                period_end: float) -> Reservation:
        args = [amount, -1 if limit is None else limit, self._expire_ms(period_end), account.key]
        ok, spent, reserved = self._run("reserve", account, args, "reserve budget")
        return Reservation(bool(ok), int(spent), int(reserved))

    def settle(self, account: Account, reserved: int, actual: int, period_end: float) -> int:
        args = [-reserved, actual, self._expire_ms(period_end), account.key]
        return int(self._run("settle", account, args, "record a call's cost"))

    def release(self, account: Account, amount: int) -> None:
        self._run("release", account, [-amount], "release a reservation")

    def seed(self, account: Account, spent: int, period_end: float) -> bool:
        args = [spent, self._expire_ms(period_end), account.key]
        return bool(self._run("seed", account, args, "seed a period's spend"))

    def is_seeded(self, account: Account) -> bool:
        name = self._account_key(account)
        return bool(self._guard(lambda: self._client.hexists(name, "seeded"),
                                "read a budget"))

    def claim_threshold(self, account: Account, threshold: float, period_end: float) -> bool:
        args = [f"t:{threshold!r}", self._expire_ms(period_end)]
        return bool(self._run("claim", account, args, "mark a threshold crossed"))

    def balance(self, account: Account) -> tuple[int, int]:
        name = self._account_key(account)
        spent, reserved = self._guard(
            lambda: self._client.hmget(name, ["spent", "reserved"]), "read a budget")
        return int(spent or 0), int(reserved or 0)

    def keys(self, budget: str, period: str) -> list[str]:
        name = self._index_key(Account(budget, period, ""))
        members = self._guard(lambda: self._client.smembers(name), "list a budget's keys")
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    def close(self) -> None:
        """Close the connections, if this ledger made the client."""
        if self._owns_client:
            self._client.close()

    # -- beyond the protocol -------------------------------------------------------------

    @property
    def client(self) -> redis.Redis:
        return self._client

    def __repr__(self) -> str:
        return f"RedisLedger({_where(self._client)}, prefix={self.prefix!r})"

    # -- helpers -------------------------------------------------------------------------

    def _slot(self, account: Account) -> str:
        return f"{self.prefix}{{{account.budget}|{account.period}}}"

    def _account_key(self, account: Account) -> str:
        return f"{self._slot(account)}a:{account.key}"

    def _index_key(self, account: Account) -> str:
        return f"{self._slot(account)}i"

    def _expire_ms(self, period_end: float) -> int:
        return int((period_end + self.keep_after_end_s) * 1000)

    def _run(self, script: str, account: Account, args: list[Any], action: str) -> Any:
        keys = [self._account_key(account), self._index_key(account)]
        return self._guard(lambda: self._scripts[script](keys=keys, args=args), action)

    def _guard(self, step: Callable[[], _T], action: str) -> _T:
        """Run one Redis step; a Redis failure becomes ``CacheUnavailableError``."""
        try:
            return step()
        except self._errors as exc:
            where = _where(self._client)
            text = _scrub(f"{type(exc).__name__}: {exc}", self._client)
            raise CacheUnavailableError(
                f"could not {action} in the Redis budget ledger at {where}: {text}",
                fix="check that the Redis server is running and reachable, or use "
                    "LocalLedger for a single process") from exc


def _import_redis() -> Any:
    """The redis package, or a ConfigError saying how to install it (it is optional)."""
    try:
        import redis as redis_module
    except ImportError as exc:  # pragma: no cover - redis is installed in development
        raise ConfigError("RedisLedger needs the redis package, which is not installed",
                          fix="pip install 'devora_lab[redis]'") from exc
    return redis_module


def _client_from_url(url: str, timeout: float) -> redis.Redis:
    import redis as redis_module
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    try:
        return redis_module.Redis.from_url(url, socket_timeout=timeout,
                                           socket_connect_timeout=timeout,
                                           retry=Retry(NoBackoff(), 0))
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {redact_url(url)!r}: {redact_url(str(exc))}",
                          fix="use redis://[:password@]host[:port][/db], rediss://... or "
                              "unix:///path/to/socket") from exc


def redact_url(text: str) -> str:
    """``text`` with the user and password of every URL in it masked (``redis://***@h``)."""
    return _USERINFO.sub("***@", text)


def _scrub(text: str, client: redis.Redis) -> str:
    """An error text without the client's password, wherever it might be echoed."""
    password = client.connection_pool.connection_kwargs.get("password")
    if isinstance(password, str) and password:
        text = text.replace(password, "***")
    return redact_url(text)


def _where(client: redis.Redis) -> str:
    """The server's address, for messages: never the password."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
