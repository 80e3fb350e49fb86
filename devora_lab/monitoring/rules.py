"""Alert rules and notification sinks as data: one TOML file per workspace.

``<workspace>/alerts.toml`` (or any file given with ``--rules``)::

    [[rule]]
    name = "error rate"            # unique; names the alert in events and messages
    metric = "error_rate"          # any metric of devora_lab.monitoring.metrics.METRICS
    window = "15m"                 # the span evaluated, ending at the check
    op = ">"                       # >, >=, <, <=
    threshold = 0.05
    severity = "critical"          # info, warning or critical
    by = "model"                   # optional: one alert per model (any dimension)
    filters = { agent = "coder" }  # optional: only these calls
    min_requests = 20              # fewer calls in the window: no verdict (default 1)
    cooldown = "30m"               # at most one notification per rule and group per cooldown

    [[rule]]
    name = "hourly spend unusual"
    type = "forecast"              # fires outside the interval of comparable past windows
    metric = "cost_usd"
    window = "1h"                  # at most 1d
    interval = 0.95
    history = "14d"
    direction = "above"            # above, below or both

    [[sink]]
    type = "webhook"               # Slack-compatible JSON body ("format": "slack" or "json")
    url_env = "DEVORA_ALERT_WEBHOOK"   # the URL is a secret: name the variable holding it
    [[sink]]
    type = "email"
    host = "smtp.example.com"
    from_addr = "alerts@example.com"
    to = ["oncall@example.com"]
    password_env = "SMTP_PASSWORD"
    [[sink]]
    type = "log"

Every rule and sink is validated with its position and name in the message, so a typo is
found when the file is loaded, not when the alert should have fired. Secrets (webhook URLs,
SMTP passwords) are read from the environment by name; a file that holds one is refused.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from devora_lab.errors import AlertRuleError
from devora_lab.events.dimensions import DIMENSIONS
from devora_lab.monitoring.metrics import METRICS
from devora_lab.monitoring.windows import parse_duration

__all__ = ["AlertConfig", "EmailSinkConfig", "ForecastRule", "LogSinkConfig", "Rule",
           "SinkConfig", "ThresholdRule", "WebhookSinkConfig", "load_alert_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _duration(value: str) -> str:
    parse_duration(value)  # raises ConfigError with the fix
    return value


class _RuleBase(_Strict):
    name: str = Field(min_length=1, max_length=120)
    metric: str
    window: str = "15m"
    severity: Literal["info", "warning", "critical"] = "warning"
    by: str | None = None
    filters: dict[str, str | list[str]] = Field(default_factory=dict)
    min_requests: int = Field(1, ge=0)
    cooldown: str = "30m"
    description: str = ""

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"unknown metric {value!r}; use one of {', '.join(METRICS)}")
        return value

    @field_validator("window", "cooldown")
    @classmethod
    def _valid_duration(cls, value: str) -> str:
        return _duration(value)

    @field_validator("by")
    @classmethod
    def _known_dimension(cls, value: str | None) -> str | None:
        if value is not None and value not in DIMENSIONS:
            raise ValueError(f"unknown dimension {value!r}; use one of {', '.join(DIMENSIONS)}")
        return value

    @field_validator("filters")
    @classmethod
    def _known_filters(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = [name for name in value if name not in DIMENSIONS]
        if unknown:
            raise ValueError(f"unknown filter dimension(s) {', '.join(unknown)}; "
                             f"use any of {', '.join(DIMENSIONS)}")
        empty = [name for name, wanted in value.items() if wanted == []]
        if empty:
            raise ValueError(f"filter {empty[0]} lists no values; give one or more")
        return value


class ThresholdRule(_RuleBase):
    """Fires while ``metric`` over the last ``window`` compares true with ``threshold``."""

    type: Literal["threshold"] = "threshold"
    op: Literal[">", ">=", "<", "<="]
    threshold: float


class ForecastRule(_RuleBase):
    """Fires while ``metric`` over the last ``window`` falls outside the ``interval`` of the
    same clock window on comparable past days (same weekday type once two weeks exist), so
    the night is not compared with noon, nor Sunday with Monday."""

    type: Literal["forecast"]
    interval: float = Field(0.95, gt=0.5, lt=1.0)
    history: str = "14d"
    direction: Literal["above", "below", "both"] = "above"

    @field_validator("history")
    @classmethod
    def _valid_history(cls, value: str) -> str:
        return _duration(value)

    @field_validator("window")
    @classmethod
    def _at_most_a_day(cls, value: str) -> str:
        if parse_duration(value).total_seconds() > 86_400:
            raise ValueError(f"a forecast rule's window is at most 1d, got {value}: its "
                             "comparable windows are the same hours of earlier days")
        return value


Rule = Annotated[ThresholdRule | ForecastRule, Field(discriminator="type")]


class LogSinkConfig(_Strict):
    type: Literal["log"]
    level: Literal["info", "warning", "error"] = "warning"


class WebhookSinkConfig(_Strict):
    """An HTTP POST per notification; ``url_env`` names the variable holding the URL (Slack
    webhook URLs are secrets); ``url`` is accepted for local endpoints only."""

    type: Literal["webhook"]
    url: str | None = None
    url_env: str | None = None
    format: Literal["slack", "json"] = "slack"
    timeout_s: float = Field(5.0, gt=0, le=120)
    retries: int = Field(3, ge=0, le=10)

    def resolved_url(self, env: Mapping[str, str] | None = None) -> str:
        source = os.environ if env is None else env
        url = source.get(self.url_env) if self.url_env else self.url
        if not url:
            where = f"${self.url_env}" if self.url_env else "url"
            raise AlertRuleError(f"the webhook sink has no URL ({where} is empty)",
                                 fix=f"set {where} to the webhook's URL")
        return url


class EmailSinkConfig(_Strict):
    type: Literal["email"]
    host: str
    port: int = Field(25, gt=0, lt=65_536)
    from_addr: str
    to: list[str] = Field(min_length=1)
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None
    timeout_s: float = Field(10.0, gt=0, le=120)


SinkConfig = Annotated[LogSinkConfig | WebhookSinkConfig | EmailSinkConfig,
                       Field(discriminator="type")]


class AlertConfig(_Strict):
    """The rules and sinks of one workspace."""

    rule: list[Rule] = Field(default_factory=list)
    sink: list[SinkConfig] = Field(default_factory=list)

    @property
    def rules(self) -> list[ThresholdRule | ForecastRule]:
        return list(self.rule)

    @property
    def sinks(self) -> list[LogSinkConfig | WebhookSinkConfig | EmailSinkConfig]:
        return list(self.sink)


def load_alert_config(path: str | os.PathLike[str]) -> AlertConfig:
    """Read and validate a rules file; a missing file is an empty configuration."""
    file = Path(path)
    if not file.exists():
        return AlertConfig()
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AlertRuleError(f"{file} is not valid TOML: {exc}",
                             fix="fix the syntax; see the example in the README") from None
    return parse_alert_config(data, source=str(file))


def parse_alert_config(data: Mapping[str, Any], *, source: str = "rules") -> AlertConfig:
    """Validate already-parsed data (``rule`` and ``sink`` lists)."""
    _refuse_secrets(data, source)
    data = _with_default_types(data)
    try:
        config = AlertConfig.model_validate(data)
    except ValidationError as exc:
        section = exc.errors()[0]["loc"][0] if exc.errors()[0]["loc"] else "rule"
        raise AlertRuleError(f"{source}: {_describe(exc, data)}",
                             fix=_SINK_FIX if section == "sink" else _RULE_FIX) from None
    names = [rule.name for rule in config.rules]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise AlertRuleError(f"{source}: rule names must be unique; repeated: "
                             f"{', '.join(duplicates)}", fix="rename one of each pair")
    return config


_RULE_FIX: Final = ("correct that field; valid rule fields are name, type, metric, window, op, "
                    "threshold, severity, by, filters, min_requests, cooldown, description, "
                    "interval, history, direction")
_SINK_FIX: Final = ("correct that field; a sink's type is log (level), webhook (url_env or url, "
                    "format, timeout_s, retries) or email (host, port, from_addr, to, starttls, "
                    "username, password_env, timeout_s)")
_TAGS: Final = ("threshold", "forecast", "log", "webhook", "email")


def _with_default_types(data: Mapping[str, Any]) -> dict[str, Any]:
    """A rule without ``type`` is a threshold rule."""
    rules = data.get("rule")
    if not isinstance(rules, list):
        return dict(data)
    typed = [{"type": "threshold", **rule} if isinstance(rule, Mapping) else rule
             for rule in rules]
    return {**data, "rule": typed}


def _describe(exc: ValidationError, data: Mapping[str, Any]) -> str:
    first = exc.errors()[0]
    loc = list(first["loc"])
    where = ".".join(str(part) for part in loc)
    if len(loc) >= 2 and loc[0] in ("rule", "sink") and isinstance(loc[1], int):
        entries = data.get(str(loc[0])) or []
        entry = entries[loc[1]] if loc[1] < len(entries) else {}
        label = entry.get("name") if isinstance(entry, Mapping) else None
        position = f"{loc[0]} #{loc[1] + 1}" + (f" ({label!r})" if label else "")
        # a discriminated union puts the variant's tag before the field: rule.0.threshold.op
        fields = loc[3:] if len(loc) > 3 and loc[2] in _TAGS else loc[2:]
        rest = [str(part) for part in fields]
        where = position + (f", field {'.'.join(rest)}" if rest else "")
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"


def _refuse_secrets(data: Mapping[str, Any], source: str) -> None:
    sinks = data.get("sink")
    for index, sink in enumerate(sinks if isinstance(sinks, list) else []):
        secrets = [key for key in ("password", "token") if isinstance(sink, Mapping)
                   and key in sink]
        if secrets:
            raise AlertRuleError(f"{source}: sink #{index + 1} holds a secret in the file "
                                 f"(field {secrets[0]})",
                                 fix="remove it and name an environment variable instead "
                                 "(password_env = \"SMTP_PASSWORD\")")
