"""Alert rule files: every mistake is refused at load time with the rule (position and name),
the field and a fix; secrets never sit in the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devora_lab.errors import AlertRuleError, ConfigError
from devora_lab.monitoring.rules import (
    EmailSinkConfig,
    ForecastRule,
    LogSinkConfig,
    ThresholdRule,
    WebhookSinkConfig,
    load_alert_config,
    parse_alert_config,
)
from devora_lab.monitoring.sinks import build_sinks

from .helpers import write_rules

GOOD = """
[[rule]]
name = "error rate"
metric = "error_rate"
window = "15m"
op = ">"
threshold = 0.05
severity = "critical"
by = "model"
filters = { agent = "coder", provider = ["openai", "anthropic"] }
min_requests = 20
cooldown = "1h"

[[rule]]
name = "hourly spend unusual"
type = "forecast"
metric = "cost_usd"
window = "1h"
history = "21d"
direction = "both"

[[sink]]
type = "webhook"
url_env = "HOOK_URL"
format = "json"
retries = 1

[[sink]]
type = "email"
host = "127.0.0.1"
port = 2525
from_addr = "alerts@example.com"
to = ["oncall@example.com"]
password_env = "SMTP_PASSWORD"
username = "alerts"

[[sink]]
type = "log"
"""


def _rule(**fields: Any) -> dict[str, Any]:
    return {"rule": [{"name": "slow", "metric": "latency_p95_ms", "op": ">", "threshold": 2000,
                      **fields}]}


def _refused(data: dict[str, Any]) -> AlertRuleError:
    with pytest.raises(AlertRuleError) as caught:
        parse_alert_config(data, source="alerts.toml")
    assert isinstance(caught.value, ConfigError)
    assert caught.value.fix
    return caught.value


def test_a_full_file_loads_with_its_types_and_defaults(tmp_path: Path) -> None:
    config = load_alert_config(write_rules(tmp_path / "alerts.toml", GOOD))
    threshold, forecast = config.rules
    assert isinstance(threshold, ThresholdRule) and isinstance(forecast, ForecastRule)
    assert threshold.by == "model" and threshold.min_requests == 20
    assert threshold.filters == {"agent": "coder", "provider": ["openai", "anthropic"]}
    assert forecast.interval == 0.95 and forecast.severity == "warning"
    assert forecast.min_requests == 1 and forecast.cooldown == "30m"
    kinds = [type(sink) for sink in config.sinks]
    assert kinds == [WebhookSinkConfig, EmailSinkConfig, LogSinkConfig]


def test_a_missing_file_is_an_empty_config(tmp_path: Path) -> None:
    config = load_alert_config(tmp_path / "nothing-here.toml")
    assert config.rules == [] and config.sinks == []


def test_a_rule_without_type_is_a_threshold_rule() -> None:
    (rule,) = parse_alert_config(_rule()).rules
    assert isinstance(rule, ThresholdRule) and rule.type == "threshold"


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write_rules(tmp_path / "alerts.toml", '[[rule]]\nname = "unterminated\n')
    with pytest.raises(AlertRuleError) as caught:
        load_alert_config(path)
    assert "alerts.toml is not valid TOML" in caught.value.message
    assert caught.value.fix


@pytest.mark.parametrize(("fields", "field", "says"), [
    ({"metric": "eror_rate"}, "field metric", "unknown metric 'eror_rate'"),
    ({"by": "colour"}, "field by", "unknown dimension 'colour'"),
    ({"filters": {"team": "x"}}, "field filters", "unknown filter dimension(s) team"),
    ({"filters": {"model": []}}, "field filters", "filter model lists no values"),
    ({"treshold": 3}, "field treshold", "Extra inputs are not permitted"),
    ({"op": "=>"}, "field op", "'>', '>=', '<' or '<='"),
    ({"window": "15 minutes"}, "field window", "not a duration: '15 minutes'"),
    ({"cooldown": "0s"}, "field cooldown", "not a duration"),
    ({"severity": "page"}, "field severity", "'info', 'warning' or 'critical'"),
    ({"min_requests": -1}, "field min_requests", "greater than or equal to 0"),
])
def test_a_bad_rule_names_its_position_name_and_field(fields: dict[str, Any], field: str,
                                                      says: str) -> None:
    first = {"name": "fine", "metric": "errors", "op": ">", "threshold": 1}
    data = {"rule": [first, _rule(**fields)["rule"][0]]}
    error = _refused(data)
    assert error.message.startswith("alerts.toml: rule #2 ('slow'), ")
    assert field in error.message and says in error.message
    assert "valid rule fields" in (error.fix or "")


def test_a_missing_field_is_named_once() -> None:
    error = _refused({"rule": [{"name": "x", "metric": "errors", "op": ">"}]})
    assert "rule #1 ('x'), field threshold: Field required" in error.message


def test_a_rule_without_a_name_is_named_by_position() -> None:
    error = _refused({"rule": [{"metric": "errors", "op": ">", "threshold": 1}]})
    assert "rule #1, field name" in error.message


def test_forecast_rules_are_checked_too() -> None:
    base = {"name": "spend", "type": "forecast", "metric": "cost_usd"}
    error = _refused({"rule": [{**base, "window": "2d"}]})
    assert "rule #1 ('spend'), field window" in error.message
    assert "at most 1d" in error.message
    assert "field history" in _refused({"rule": [{**base, "history": "two weeks"}]}).message
    assert "field interval" in _refused({"rule": [{**base, "interval": 1.5}]}).message
    assert "field direction" in _refused({"rule": [{**base, "direction": "up"}]}).message
    # a threshold field on a forecast rule is a typo, not ignored
    assert "field op" in _refused({"rule": [{**base, "op": ">"}]}).message
    unknown = _refused({"rule": [{**base, "type": "anomaly"}]})
    assert "rule #1 ('spend')" in unknown.message and "'anomaly'" in unknown.message


def test_rule_names_are_unique() -> None:
    error = _refused({"rule": [_rule()["rule"][0], _rule()["rule"][0]]})
    assert "unique" in error.message and "slow" in error.message


def test_a_password_in_a_sink_is_refused() -> None:
    sink = {"type": "email", "host": "smtp.example.com", "from_addr": "a@example.com",
            "to": ["b@example.com"], "password": "hunter2"}
    error = _refused({"sink": [{"type": "log"}, sink]})
    assert "sink #2" in error.message and "password" in error.message
    assert "hunter2" not in str(error)
    assert "password_env" in (error.fix or "")


def test_bad_sinks_name_the_sink_and_field() -> None:
    error = _refused({"sink": [{"type": "webhook", "url_env": "HOOK", "retry": 3}]})
    assert "sink #1, field retry" in error.message
    assert "webhook" in (error.fix or "")
    assert "sink #1" in _refused({"sink": [{"type": "pager"}]}).message
    assert "field to" in _refused({"sink": [{"type": "email", "host": "h", "from_addr": "a",
                                             "to": []}]}).message


def test_a_webhook_without_url_fails_when_built() -> None:
    config = parse_alert_config({"sink": [{"type": "webhook", "url_env": "NO_SUCH_HOOK"}]})
    with pytest.raises(AlertRuleError) as caught:
        build_sinks(config.sinks, env={})
    assert "$NO_SUCH_HOOK" in caught.value.message
    assert "set $NO_SUCH_HOOK" in (caught.value.fix or "")
    neither = parse_alert_config({"sink": [{"type": "webhook"}]})
    with pytest.raises(AlertRuleError, match="no URL"):
        build_sinks(neither.sinks, env={})
    (sink,) = build_sinks(config.sinks, env={"NO_SUCH_HOOK": "http://127.0.0.1:9/hook"})
    sink.close()


def test_an_email_sink_without_its_password_fails_when_built() -> None:
    config = parse_alert_config({"sink": [{"type": "email", "host": "h", "from_addr": "a",
                                           "to": ["b"], "password_env": "SMTP_PW"}]})
    with pytest.raises(AlertRuleError, match=r"\$SMTP_PW"):
        build_sinks(config.sinks, env={})
