"""config.yaml + environment -> AppConfig: defaults, located errors, env overrides, redaction."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from dsl.errors import RulesError
from dsl.source import load_schema
from router.config import (
    AppConfig,
    ConfigError,
    LoopDetectionConfig,
    ServerConfig,
    SessionConfig,
    ToolCallLoopDetectionConfig,
    Timeouts,
    load_config,
)


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def assert_located(err: RulesError, path: str, line: int, col: int) -> str:
    text = err.render()
    assert f"{path}:{line}:{col}:" in text, text
    assert re.search(r"^\s*\^$", text, re.MULTILINE), text  # caret line
    return text


GOOD = """\
backends:
  openai:
    type: openai
    api_keys: [sk-a, sk-b]
    models: [gpt-4o, gpt-4o-mini]
    timeout: {connect: 5, first_byte: 30}
  anthropic:
    api_key: sk-ant
    timeout: 60
  local:
    type: openai-compatible
    base_url: http://localhost:8080/v1
    headers: {X-Api-Key: hdr-secret, X-Team: core}
  gemini-cli-cloud-project:
    type: gemini-cli-cloud-project
    gcp_project_id: my-proj
    gemini_api_base_url: https://cloudcode-pa.googleapis.com
default_backend: anthropic
auth:
  api_keys: [client-1]
  admin_keys: [admin-1]
routes_dir: rules
proxy_timeout: 30
command_prefix: "##"
max_body_bytes: 2048
interactive_commands: false
session:
  repository: file
  path: state/sessions
  ttl_seconds: 60
  max_sessions: 5
  max_history: 3
  tool_call_repair_enabled: false
  tool_call_repair_buffer_cap_bytes: 1024
loop_detection: {enabled: false, min_pattern_length: 10, max_pattern_length: 100, min_repetitions: 3}
tool_call_loop_detection: {max_repeats: 2, ttl_seconds: 10, mode: chance_then_block}
usage: {path: usage.db, retention_days: 7}
logging: {level: debug, format: json}
"""


# --------------------------------------------------------------------------- defaults and paths


def test_embedded_defaults_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, env={})
    assert list(cfg.backends) == ["echo"]
    assert cfg.backends["echo"].type == "echo"
    assert cfg.default_backend == "echo"
    assert cfg.auth_keys == () and cfg.admin_keys == ()
    assert cfg.source_path is None
    assert cfg.command_prefix == "!/"
    assert cfg.proxy_timeout == 120
    assert cfg.max_body_bytes == 10 * 1024 * 1024
    assert cfg.interactive_commands is True
    assert cfg.routes_dir == str(tmp_path / "routes.d")
    assert cfg.session == dataclasses.replace(SessionConfig(), path=str(tmp_path / "sessions"))
    assert cfg.loop_detection == LoopDetectionConfig()
    assert cfg.tool_call_loop_detection == ToolCallLoopDetectionConfig(enabled=True, max_repeats=4,
                                                                       ttl_seconds=120, mode="break")


def test_defaults_match_schema_defaults() -> None:
    """The schema documents the same defaults the dataclasses apply."""
    schema = load_schema("config")["properties"]
    for section, cls in (("session", SessionConfig), ("loop_detection", LoopDetectionConfig),
                         ("tool_call_loop_detection", ToolCallLoopDetectionConfig), ("server", ServerConfig)):
        instance = cls()
        for key, spec in schema[section]["properties"].items():
            if "default" in spec:
                assert getattr(instance, key) == spec["default"], (section, key)
    for key in ("routes_dir", "proxy_timeout", "command_prefix", "max_body_bytes", "interactive_commands"):
        field = AppConfig.__dataclass_fields__[key]
        assert field.default == schema[key]["default"], key


def test_picks_up_config_yaml_in_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "backends:\n  echo2: {type: echo}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, env={})
    assert list(cfg.backends) == ["echo2"]
    assert cfg.source_path == str(tmp_path / "config.yaml")


def test_explicit_missing_path_is_an_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(missing, env={})
    assert missing in str(info.value)
    assert isinstance(info.value, RulesError)


def test_missing_path_from_env_is_an_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(None, env={"LLM_PROXY_CONFIG": missing})


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "# nothing yet\n"), env={})
    assert list(cfg.backends) == ["echo"] and cfg.default_backend == "echo"


# --------------------------------------------------------------------------- a good file


def test_good_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    cfg = load_config(path, env={})
    assert cfg.source_path == path
    assert list(cfg.backends) == ["openai", "anthropic", "local", "gemini-cli-cloud-project"]
    openai = cfg.backends["openai"]
    assert openai.type == "openai" and openai.api_keys == ("sk-a", "sk-b")
    assert openai.models == ("gpt-4o", "gpt-4o-mini")
    assert openai.timeouts(cfg.proxy_timeout) == Timeouts(connect=5, first_byte=30, idle=30)
    anthropic = cfg.backends["anthropic"]
    assert anthropic.type == "anthropic"  # inferred from the name
    assert anthropic.api_keys == ("sk-ant",)
    assert cfg.backend_timeouts("anthropic") == Timeouts(60, 60, 60)
    local = cfg.backends["local"]
    assert local.base_url == "http://localhost:8080/v1" and local.headers["X-Team"] == "core"
    assert local.health_check is True
    cloud = cfg.backends["gemini-cli-cloud-project"]
    assert cloud.options["gcp_project_id"] == "my-proj"
    assert cloud.base_url == "https://cloudcode-pa.googleapis.com"
    assert cfg.default_backend == "anthropic"
    assert cfg.auth_keys == ("client-1",) and cfg.admin_keys == ("admin-1",)
    assert cfg.routes_dir == str(tmp_path / "rules")
    assert cfg.proxy_timeout == 30.0 and cfg.command_prefix == "##"
    assert cfg.max_body_bytes == 2048 and cfg.interactive_commands is False
    assert cfg.session == SessionConfig("file", str(tmp_path / "state" / "sessions"), 60, 5, 3, False, 1024)
    assert cfg.loop_detection == LoopDetectionConfig(False, 10, 100, 3)
    assert cfg.tool_call_loop_detection == ToolCallLoopDetectionConfig(True, 2, 10, "chance_then_block")
    assert cfg.usage.path == str(tmp_path / "usage.db") and cfg.usage.retention_days == 7
    assert cfg.logging.level == "DEBUG" and cfg.logging.format == "json"


def test_server_limits(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "server:\n  header_timeout: 5\n  max_connections: 64\n"), env={})
    assert cfg.server == ServerConfig(header_timeout=5.0, body_timeout=60.0, max_connections=64)
    assert isinstance(cfg.server.header_timeout, float)
    assert load_config(write(tmp_path, "proxy_timeout: 5\n"), env={}).server == ServerConfig()


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD), env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.proxy_timeout = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.backends["openai"].options["models"] = ()  # type: ignore[index]
    assert dataclasses.replace(cfg, interactive_commands=True).interactive_commands is True


def test_default_backend_defaults_to_first(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "backends:\n  b: {type: echo}\n  a: {type: echo}\n"), env={})
    assert cfg.default_backend == "b"


# --------------------------------------------------------------------------- bad files


@pytest.mark.parametrize(
    ("text", "line", "col", "words"),
    [
        ("proxy_timeout: 5\nprxy_timeout: 3\n", 2, 1, ["prxy_timeout", "was unexpected"]),
        ("backends:\n  openai:\n    api_kye: x\n", 3, 5, ["api_kye", "backends/openai"]),
        ("proxy_timeout: soon\n", 1, 16, ["proxy_timeout", "wrong type", "number"]),
        ("session:\n  max_history: many\n", 2, 16, ["session/max_history", "wrong type"]),
        ("backends:\n  x:\n    type: openia\n", 3, 11, ["openia", "not allowed", "openai-compatible"]),
        ("session:\n  repository: disk\n", 2, 15, ["disk", "in_memory"]),
        ("tool_call_loop_detection:\n  mode: nuke\n", 2, 9, ["nuke", "chance_then_block"]),
        ("command_prefix: '! /'\n", 1, 17, ["command_prefix"]),
        ("backends:\n  x:\n    timeout: {connect: 0}\n", 3, 24, ["timeout/connect"]),
        ("backends:\n  x:\n    type: echo\n  y: [1]\n", 4, 6, ["backends/y"]),
        ("server:\n  header_timeout: 0\n", 2, 19, ["server/header_timeout"]),
        ("server:\n  max_connections: lots\n", 2, 20, ["server/max_connections", "wrong type"]),
        ("backends:\n  x:\n    max_response_bytes: 1000\n", 3, 25,
         ["backends/x/max_response_bytes", "less than the minimum of 65536"]),
        ("backends:\n  x:\n    max_response_bytes: 32MiB\n", 3, 25, ["backends/x/max_response_bytes", "wrong type"]),
    ],
    ids=["unknown-top-key", "unknown-backend-key", "wrong-type", "wrong-type-nested", "bad-backend-type",
         "bad-repository", "bad-mode", "prefix-space", "timeout-zero", "backend-not-object", "header-timeout-zero",
         "max-connections-type", "max-response-bytes-small", "max-response-bytes-type"],
)
def test_bad_files_are_located(tmp_path: Path, text: str, line: int, col: int, words: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RulesError) as info:
        load_config(path, env={})
    rendered = assert_located(info.value, path, line, col)
    for word in words:
        assert word in rendered, rendered


def test_several_errors_reported_together(tmp_path: Path) -> None:
    path = write(tmp_path, "proxy_timeout: x\nsession:\n  repository: disk\n")
    with pytest.raises(RulesError) as info:
        load_config(path, env={})
    text = info.value.render()
    assert f"{path}:1:16:" in text and f"{path}:3:15:" in text


def test_yaml_syntax_error_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, "backends:\n  openai: {type: openai\n")
    with pytest.raises(RulesError) as info:
        load_config(path, env={})
    assert f"{path}:" in info.value.render() and "YAML syntax" in info.value.render()


def test_unknown_default_backend_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, "backends:\n  openai: {type: openai}\ndefault_backend: anthropic\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    text = assert_located(info.value, path, 3, 18)
    assert "anthropic" in text and "openai" in text


def test_backend_without_type_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, "backends:\n  mine:\n    base_url: http://x\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    text = assert_located(info.value, path, 3, 5)
    assert "'mine' has no 'type'" in text


def test_loop_pattern_bounds_checked(tmp_path: Path) -> None:
    path = write(tmp_path, "loop_detection:\n  min_pattern_length: 50\n  max_pattern_length: 10\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert_located(info.value, path, 2, 23)


# --------------------------------------------------------------------------- environment


def test_provider_env_creates_backends_without_a_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./config.yaml
    env = {
        "OPENAI_API_KEY": "sk-main",
        "OPENAI_API_KEY_2": "sk-two",
        "OPENAI_API_KEY_1": "sk-one",
        "OPENAI_API_KEY_10": "sk-ten",
        "ANTHROPIC_API_KEY_1": "ant-1",
        "GEMINI_API_KEY": "gem",
        "OPENROUTER_API_KEY": " or-key ",
    }
    cfg = load_config(None, env=env)
    assert cfg.backends["openai"].type == "openai"
    assert cfg.backends["openai"].api_keys == ("sk-main", "sk-one", "sk-two", "sk-ten")
    assert cfg.backends["anthropic"].api_keys == ("ant-1",)
    assert cfg.backends["gemini"].type == "gemini" and cfg.backends["gemini"].api_keys == ("gem",)
    assert cfg.backends["openrouter"].api_keys == ("or-key",)
    assert cfg.default_backend == "echo"  # the embedded defaults still answer first
    assert dict(cfg.backend_sources) == {"echo": "embedded default", "openai": "OPENAI_API_KEY",
                                         "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY",
                                         "openrouter": "OPENROUTER_API_KEY"}


def test_provider_env_adds_nothing_to_a_config_file(tmp_path: Path) -> None:
    """With a file, the file says which backends exist; the environment comes in through ${VAR}."""
    text = ("backends:\n  echo: {type: echo}\n"
            "  anthropic: {type: anthropic, api_key: \"${ANTHROPIC_API_KEY}\", models: [claude-3]}\n")
    env = {"OPENAI_API_KEY": "sk-from-env", "ANTHROPIC_API_KEY": "ant", "GEMINI_API_KEY": "gem"}
    cfg = load_config(write(tmp_path, text), env=env)
    assert list(cfg.backends) == ["echo", "anthropic"] and cfg.default_backend == "echo"
    assert cfg.backends["anthropic"].api_keys == ("ant",)  # the reference is filled
    assert dict(cfg.backend_sources) == {"echo": "config.yaml:2", "anthropic": "config.yaml:3"}


def test_shipped_config_answers_with_echo_whatever_the_environment() -> None:
    """README's first run ("no API key needed, echo answers") holds with provider keys exported."""
    root = Path(__file__).resolve().parents[1]
    env = {"OPENAI_API_KEY": "sk-x", "ANTHROPIC_API_KEY": "a", "GEMINI_API_KEY": "g", "OPENROUTER_API_KEY": "o"}
    cfg = load_config(str(root / "config.yaml"), env=env)
    assert list(cfg.backends) == ["echo"] and cfg.default_backend == "echo"


def test_client_keys_from_env(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "auth: {api_keys: [k1]}\n"), env={"LLM_PROXY_API_KEYS": "k2, k3,,k1"})
    assert cfg.auth_keys == ("k1", "k2", "k3")


def test_gemini_cli_env(tmp_path: Path) -> None:
    text = (
        "backends:\n"
        "  personal: {type: gemini-cli-oauth-personal}\n"
        "  cloud: {type: gemini-cli-cloud-project}\n"
        "  pinned: {type: gemini-cli-cloud-project, gcp_project_id: pinned-proj}\n"
    )
    env = {"GCP_PROJECT_ID": "env-proj", "GEMINI_CREDENTIALS_PATH": "/creds"}
    cfg = load_config(write(tmp_path, text), env=env)
    assert cfg.backends["cloud"].options["gcp_project_id"] == "env-proj"
    assert cfg.backends["cloud"].options["credentials_path"] == "/creds"
    assert cfg.backends["pinned"].options["gcp_project_id"] == "pinned-proj"
    assert cfg.backends["personal"].options["credentials_path"] == "/creds"
    assert "gcp_project_id" not in cfg.backends["personal"].options
    assert "gemini-cli-cloud-project" not in cfg.backends  # a cloud backend exists already


def test_gcp_project_env_alone_adds_cloud_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no config file
    cfg = load_config(None, env={"GCP_PROJECT_ID": "p"})
    cloud = cfg.backends["gemini-cli-cloud-project"]
    assert cloud.type == "gemini-cli-cloud-project" and cloud.options["gcp_project_id"] == "p"


def test_tool_call_repair_and_prefix_env(tmp_path: Path) -> None:
    path = write(tmp_path, "session: {tool_call_repair_enabled: true}\n")
    env = {"TOOL_CALL_REPAIR_ENABLED": "No", "TOOL_CALL_REPAIR_BUFFER_CAP_BYTES": "4096",
           "LLM_PROXY_COMMAND_PREFIX": "@@"}
    cfg = load_config(path, env=env)
    assert cfg.session.tool_call_repair_enabled is False
    assert cfg.session.tool_call_repair_buffer_cap_bytes == 4096
    assert cfg.command_prefix == "@@"
    assert load_config(path, env={"TOOL_CALL_REPAIR_ENABLED": "1"}).session.tool_call_repair_enabled is True


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"TOOL_CALL_REPAIR_ENABLED": "maybe"}, ["TOOL_CALL_REPAIR_ENABLED", "maybe", "boolean"]),
        ({"TOOL_CALL_REPAIR_BUFFER_CAP_BYTES": "big"}, ["TOOL_CALL_REPAIR_BUFFER_CAP_BYTES", "integer"]),
        ({"TOOL_CALL_REPAIR_BUFFER_CAP_BYTES": "0"}, ["TOOL_CALL_REPAIR_BUFFER_CAP_BYTES", "at least"]),
        ({"LLM_PROXY_COMMAND_PREFIX": "a b"}, ["LLM_PROXY_COMMAND_PREFIX"]),
    ],
)
def test_bad_env_values(tmp_path: Path, env: dict[str, str], words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, ""), env=env)
    for word in words:
        assert word in str(info.value)


def test_var_expansion(tmp_path: Path) -> None:
    text = (
        "backends:\n"
        "  openai:\n"
        "    api_key: ${MY_OPENAI}\n"
        "    base_url: https://${HOST:-api.openai.com}/v1\n"
        "    headers: {X-Literal: \"$${NOT_EXPANDED}\"}\n"
        "auth:\n"
        "  api_keys: [\"${CLIENT}\"]\n"
    )
    cfg = load_config(write(tmp_path, text), env={"MY_OPENAI": "sk-x", "CLIENT": "c1"})
    assert cfg.backends["openai"].api_keys == ("sk-x",)
    assert cfg.backends["openai"].base_url == "https://api.openai.com/v1"
    assert cfg.backends["openai"].headers["X-Literal"] == "${NOT_EXPANDED}"
    assert cfg.auth_keys == ("c1",)


def test_var_expansion_missing_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, "backends:\n  openai:\n    api_key: ${NOT_SET_ANYWHERE}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    text = assert_located(info.value, path, 3, 14)
    assert "NOT_SET_ANYWHERE" in text


def test_uses_os_environ_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_PROXY_API_KEYS", "from-os")
    assert load_config(write(tmp_path, ""), env=os.environ).auth_keys == ("from-os",)
    assert load_config(write(tmp_path, "")).auth_keys == ("from-os",)


# --------------------------------------------------------------------------- redaction


def test_repr_never_contains_keys(tmp_path: Path) -> None:
    secrets = ["sk-a", "sk-b", "sk-ant", "hdr-secret", "client-1", "admin-1", "env-client", "env-openrouter"]
    cfg = load_config(write(tmp_path, GOOD), env={"LLM_PROXY_API_KEYS": "env-client",
                                                  "OPENROUTER_API_KEY": "env-openrouter"})
    for text in (repr(cfg), str(cfg), repr(cfg.backends), str(cfg.redacted()), repr(cfg.backends["local"])):
        for secret in secrets:
            assert secret not in text, (secret, text)
    assert "<redacted>" in repr(cfg)
    assert cfg.redacted()["backends"]["openai"]["api_keys"] == ["<redacted>", "<redacted>"]
    assert cfg.redacted()["backends"]["local"]["headers"]["X-Team"] == "core"


# --------------------------------------------------------------------------- credentials in URLs


@pytest.mark.parametrize("backend", [
    "type: openai\n    api_key: sk-abcdefgh1234\n    base_url: http://alice:pw-in-url-42@127.0.0.1:9/v1",
    "type: openai-compatible\n    base_url: 'https://tokenonly-user-77@llm.internal/v1'",
    "type: gemini\n    api_key: k\n    gemini_api_base_url: https://bob:pw-in-url-42@g.internal",
    "type: gemini-cli-oauth-personal\n    token_url: https://carol:pw-in-url-42@oauth.internal/token",
])
def test_url_credentials_are_refused_where_written(tmp_path: Path, backend: str) -> None:
    """``user:password@`` in a backend URL means nothing to the connectors (keys go in
    ``api_key`` or ``headers``), and an ``openai`` backend used to answer 500 with it: refused at
    load, positioned, and the error itself does not repeat the credentials."""
    path = write(tmp_path, f"backends:\n  b:\n    {backend}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    line = next(i for i, text in enumerate(backend.split("\n"), start=3) if "://" in text)
    text = info.value.render()
    assert f"{path}:{line}:" in text and "credentials in a URL" in text and "api_key" in text
    assert re.search(r"^\s*\^$", text, re.MULTILINE), text
    for secret in ("pw-in-url-42", "alice", "tokenonly-user-77"):
        assert secret not in text, text


def test_check_reports_url_credentials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from router.cli import main

    path = write(tmp_path, "backends:\n  b: {type: openai, api_key: k, base_url: 'http://u:pw-in-url-42@h/v1'}\n")
    assert main(["check", "--config", path]) == 1
    err = capsys.readouterr().err
    assert "backends.b.base_url" in err and "pw-in-url-42" not in err


def test_repr_shows_urls_without_credentials() -> None:
    from router.config import BackendConfig

    cfg = BackendConfig("b", "openai", base_url="https://u:pw-in-url-42@h/v1",
                        options={"token_url": "https://u:pw-in-url-42@o/token"})
    assert "pw-in-url-42" not in repr(cfg) and "https://h/v1" in repr(cfg)
