"""Injected faults: which request fails, how, and reproducibly.

Each API request gets a sequence number ``k``; its fault is drawn from a counter-based
generator (SplitMix64 of ``seed`` and ``k``), so the ``k``-th request's fault is the same
in every run with the same seed, however many threads send requests and whatever they
ask for. A test can also force one fault with the ``x-sim-fault`` request header.
"""

from __future__ import annotations

import email.utils
import math
import time
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Final

from devora_lab.errors import ConfigError

__all__ = ["Fault", "FaultConfig", "FaultKind", "FaultPlan", "counter_uniform",
           "retry_after_headers"]

_MASK: Final = (1 << 64) - 1


class FaultKind(StrEnum):
    """What goes wrong; the values are those ``x-sim-fault`` accepts."""

    RATE_LIMIT = "429"
    SERVER_ERROR = "500"
    BAD_GATEWAY = "502"
    UNAVAILABLE = "503"
    OVERLOADED = "529"
    TIMEOUT = "timeout"
    RESET = "reset"
    CUT = "cut"
    MALFORMED = "malformed"
    NONE = "none"

    @property
    def http_status(self) -> int | None:
        """The status an error fault answers with (529 is per dialect), else ``None``."""
        return int(self.value) if self.value.isdigit() else None


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Fault rates (probability per request, all 0 by default) and their parameters.

    ``rate_cut_stream`` ends an answer early: a stream stops after some content without
    its final events, a JSON answer stops mid-body. ``rate_malformed`` sends a 200 whose
    JSON (or one SSE data line) is broken. ``timeout_seconds`` is how long a ``timeout``
    fault holds the connection before answering normally (never scaled: it must outlast
    the client's timeout). ``http_date_share`` of 429s carry ``retry-after`` as an HTTP date
    (as gateways send it) instead of seconds plus ``retry-after-ms``.
    """

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_502: float = 0.0
    rate_503: float = 0.0
    rate_529: float = 0.0
    rate_timeout: float = 0.0
    rate_reset: float = 0.0
    rate_cut_stream: float = 0.0
    rate_malformed: float = 0.0
    retry_after_seconds: float = 1.0
    http_date_share: float = 0.25
    timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name.startswith("rate_") and not 0.0 <= value <= 1.0:
                raise ConfigError(f"fault {item.name} must be between 0 and 1, not {value}",
                                  fix="give a probability per request")
        if sum(rate for _, rate in self.rates()) > 1.0 + 1e-9:
            raise ConfigError("fault rates must add up to at most 1",
                              fix="lower some rates")
        if self.retry_after_seconds < 0 or self.timeout_seconds < 0:
            raise ConfigError("retry_after_seconds and timeout_seconds must not be negative",
                              fix="use 0 or more seconds")

    def rates(self) -> tuple[tuple[FaultKind, float], ...]:
        """Each fault kind with its rate, in a fixed order."""
        return (
            (FaultKind.RATE_LIMIT, self.rate_429), (FaultKind.SERVER_ERROR, self.rate_500),
            (FaultKind.BAD_GATEWAY, self.rate_502), (FaultKind.UNAVAILABLE, self.rate_503),
            (FaultKind.OVERLOADED, self.rate_529), (FaultKind.TIMEOUT, self.rate_timeout),
            (FaultKind.RESET, self.rate_reset), (FaultKind.CUT, self.rate_cut_stream),
            (FaultKind.MALFORMED, self.rate_malformed),
        )


@dataclass(frozen=True, slots=True)
class Fault:
    """The fault of request ``k``; ``detail`` is a second uniform draw for its particulars
    (where a stream is cut, whether a retry-after is a date)."""

    kind: FaultKind
    k: int
    detail: float


def counter_uniform(seed: int, counter: int, stream: int = 0) -> float:
    """A uniform in [0, 1) from SplitMix64 of (seed, counter, stream): no shared state."""
    x = (seed * 0x9E3779B97F4A7C15 + counter * 0xD1B54A32D192ED03
         + stream * 0x8CB92BA72F3D8DD7 + 0x632BE59BD9B4E019) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    x ^= x >> 31
    return (x >> 11) * 2.0 ** -53


class FaultPlan:
    """Decides each request's fault from the configured rates or a forced header."""

    def __init__(self, config: FaultConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self._thresholds: list[tuple[float, FaultKind]] = []
        total = 0.0
        for kind, rate in config.rates():
            if rate > 0:
                total += rate
                self._thresholds.append((total, kind))

    def decide(self, k: int, forced: str | None = None) -> Fault:
        """The fault of request ``k``; ``forced`` (an ``x-sim-fault`` value) wins.

        Raises ``ValueError`` for an unknown forced value.
        """
        detail = counter_uniform(self.seed, k, 1)
        if forced is not None:
            return Fault(FaultKind(forced.strip().lower()), k, detail)
        u = counter_uniform(self.seed, k, 0)
        for threshold, kind in self._thresholds:
            if u < threshold:
                return Fault(kind, k, detail)
        return Fault(FaultKind.NONE, k, detail)


def retry_after_headers(fault: Fault, config: FaultConfig,
                        now: float | None = None) -> dict[str, str]:
    """``retry-after`` (seconds, or an HTTP date for some) and ``retry-after-ms``."""
    seconds = config.retry_after_seconds
    if fault.detail < config.http_date_share:
        # A date has one-second resolution: round up so that waiting until it is enough.
        moment = math.ceil((time.time() if now is None else now) + seconds)
        return {"retry-after": email.utils.formatdate(moment, usegmt=True)}
    return {"retry-after": f"{math.ceil(seconds)}", "retry-after-ms": f"{round(seconds * 1000)}"}
