"""Settings: precedence, validation with suggestions, and keys kept out of files."""

from __future__ import annotations

from pathlib import Path

import pytest

from devora_lab.config import load_settings, resolve_workspace
from devora_lab.errors import ConfigError, DevoraError, SecretInConfigError
from devora_lab.workspace import Workspace


def test_workspace_precedence_argument_then_environment_then_default(tmp_path: Path) -> None:
    env = {"DEVORA_WORKSPACE": str(tmp_path / "from-env")}
    assert resolve_workspace(tmp_path / "arg", env) == (tmp_path / "arg").resolve()
    assert resolve_workspace(None, env) == (tmp_path / "from-env").resolve()
    assert resolve_workspace(None, {}).name == "devora-workspace"


def test_defaults_without_any_file(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, env={})
    assert settings.workspace == tmp_path.resolve()
    assert settings.events.roll_max_events == 20_000
    assert settings.events.content_policy == "hashed"


def test_file_then_environment_override(tmp_path: Path) -> None:
    (tmp_path / "devora.toml").write_text("[events]\nroll_max_events = 500\nfsync = true\n")
    settings = load_settings(tmp_path, env={"DEVORA_EVENTS__ROLL_MAX_EVENTS": "700"})
    assert settings.events.roll_max_events == 700
    assert settings.events.fsync is True


def test_unknown_key_in_file_suggests_the_close_one(tmp_path: Path) -> None:
    (tmp_path / "devora.toml").write_text("[events]\nrol_max_events = 5\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, env={})
    assert "events.rol_max_events" in caught.value.message
    assert caught.value.fix == "did you mean events.roll_max_events?"


def test_unknown_section_and_env_variable_are_errors(tmp_path: Path) -> None:
    (tmp_path / "devora.toml").write_text("[event]\nfsync = true\n")
    with pytest.raises(ConfigError, match="did you mean events"):
        load_settings(tmp_path, env={})
    with pytest.raises(ConfigError, match="DEVORA_EVENTS__FSYNC"):
        load_settings(tmp_path / "other", env={"DEVORA_EVENTS_FSYNC": "1"})


def test_wrong_type_names_the_setting(tmp_path: Path) -> None:
    (tmp_path / "devora.toml").write_text('[events]\nroll_max_events = "many"\n')
    with pytest.raises(ConfigError, match=r"events\.roll_max_events"):
        load_settings(tmp_path, env={})


def test_out_of_range_and_bad_toml_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "devora.toml").write_text("[events]\nroll_max_seconds = -1\n")
    with pytest.raises(ConfigError, match="roll_max_seconds"):
        load_settings(tmp_path, env={})
    (tmp_path / "devora.toml").write_text("[events\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(tmp_path, env={})


def test_api_key_in_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    secret = "sk-live-1234567890abcdef"
    (tmp_path / "devora.toml").write_text(f'[providers.openai]\napi_key = "{secret}"\n')
    with pytest.raises(SecretInConfigError) as caught:
        load_settings(tmp_path, env={})
    assert secret not in str(caught.value)
    assert "providers.openai.api_key" in str(caught.value)


def test_api_key_comes_from_the_named_environment_variable(tmp_path: Path) -> None:
    (tmp_path / "devora.toml").write_text(
        '[providers.router]\nkind = "openai"\nbase_url = "http://127.0.0.1:9"\n'
        'api_key_env = "ROUTER_KEY"\n'
    )
    env = {"ROUTER_KEY": "sk-router-secret", "OPENAI_API_KEY": "sk-openai-secret"}
    settings = load_settings(tmp_path, env=env)
    router_key = settings.api_key("router", env)
    assert router_key is not None and router_key.get_secret_value() == "sk-router-secret"
    openai_key = settings.api_key("openai", env)
    assert openai_key is not None and openai_key.get_secret_value() == "sk-openai-secret"
    assert settings.api_key("anthropic", env) is None
    assert "sk-router-secret" not in repr(router_key) + str(settings)


def test_explicit_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path, config_file=tmp_path / "missing.toml", env={})


def test_workspace_ensure_creates_folders_and_reports_unwritable(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "ws").ensure()
    for folder in ("events", "cache", "lancedb", "experiments", "prompts", "reports"):
        assert (workspace.root / folder).is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DevoraError, match="not writable") as caught:
        Workspace(blocker / "ws").ensure()
    assert caught.value.fix is not None
