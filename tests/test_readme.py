"""README stays true: its YAML snippets pass ``check``, its shell examples parse (and the operator
curls answer), and every option, setting and ``!/set`` key the code has is documented."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import falcon.testing
import pytest
import yaml

from dsl.registry import SESSION_SETTINGS
from router.app import create_app
from router.cli import _serve_parser, main
from router.config import load_config

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
BLOCKS = [(lang, body) for lang, body in FENCE.findall(README)]
YAML = [yaml.safe_load(body) for lang, body in BLOCKS if lang == "yaml"]
CONFIGS = [doc for doc in YAML if "backends" in doc]
RULES = [doc for doc in YAML if "rules" in doc]
# Rule snippets as written: loading and re-dumping them with PyYAML would turn a rule's bare ``on:``
# key into ``true:`` (YAML 1.1), which the proxy's own loader never does.
RULE_TEXTS = [body for lang, body in BLOCKS if lang == "yaml" and "rules" in yaml.safe_load(body)]
SHELL = [body for lang, body in BLOCKS if lang == "bash"]
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _commands(prefix: str) -> list[list[str]]:
    """The shell commands of README that start with ``prefix`` (continuation lines joined)."""
    out = []
    for block in SHELL:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(prefix):
                out.append(shlex.split(line))
    return out


def test_readme_has_snippets_to_check() -> None:
    assert CONFIGS and RULES and _commands("llm-interactive-proxy") and _commands("curl")


def test_readme_config_and_rules_pass_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Every config snippet with every rule snippet beside it: ``check`` finds nothing wrong."""
    routes = tmp_path / "routes.d"
    routes.mkdir()
    for index, text in enumerate(RULE_TEXTS):
        (routes / f"{index:02d}-readme.yaml").write_text(text, encoding="utf-8")
    for index, config in enumerate(CONFIGS):
        text = yaml.safe_dump(config)
        for name in ENV_REF.findall(text):
            monkeypatch.setenv(name, f"readme-placeholder-{name.lower()}")
        path = tmp_path / f"config-{index}.yaml"
        path.write_text(text, encoding="utf-8")
        assert main(["check", "--config", str(path)]) == 0, capsys.readouterr().err
        err = capsys.readouterr().err
        assert "error" not in err and "warning" not in err, err
        assert f"{sum(len(r['rules']) for r in RULES)} rule(s)" in err


def test_readme_serve_lines_parse() -> None:
    """``llm-interactive-proxy ...`` lines are accepted by the real parser (``check`` lines by its own)."""
    lines = _commands("llm-interactive-proxy")
    for argv in lines:
        args = [a for a in argv[1:] if not (a.startswith("[") or a.endswith("]"))]  # synopsis brackets
        if args and args[0] in ("check", "explain"):
            continue  # their synopses' options are checked against --help below
        _serve_parser().parse_args(args)


def test_every_command_line_option_is_documented(capsys: pytest.CaptureFixture[str]) -> None:
    options = [o for action in _serve_parser()._actions for o in action.option_strings if o.startswith("--")]
    assert "--log-level" in options and "--disable-interactive-commands" in options
    missing = [o for o in options if f"`{o}" not in README]
    assert not missing, f"README does not document {missing}"
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    check_help = capsys.readouterr().out
    for argv in _commands("llm-interactive-proxy check"):
        for word in argv:
            flag = word.strip("[]")
            if flag.startswith("--"):
                assert flag in check_help


def _schema_keys(node: dict, prefix: str = "") -> list[str]:
    out = []
    for key, sub in (node.get("properties") or {}).items():
        out.append(prefix + key)
        if "properties" in sub:
            out += _schema_keys(sub, prefix + key + ".")
    return out


def test_every_config_key_is_documented() -> None:
    schema = json.loads((ROOT / "schemas" / "config.schema.json").read_text(encoding="utf-8"))
    keys = [k for k in _schema_keys(schema) if k != "prices"] + _schema_keys(schema["$defs"]["backend"])
    missing = [k for k in keys if f"`{k.rsplit('.', 1)[-1]}" not in README and k.rsplit(".", 1)[-1] not in README]
    assert not missing, f"README does not document {missing}"
    for key in ("health_check", "client_id", "client_secret"):  # backend keys, by their own name
        assert f"`{key}`" in README or f"{key}`" in README


def test_set_command_lists_every_session_setting() -> None:
    row = next(line for line in README.splitlines() if line.startswith("| `!/set(key=value"))
    missing = [name for name in SESSION_SETTINGS if f"`{name}`" not in row]
    assert not missing, f"!/set row misses {missing}"


def test_readme_curl_examples_answer(tmp_path: Path) -> None:
    """The operator curls of "Running it in production", sent in-process with an admin key."""
    admin = "readme-admin-key-0123456789"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"backends": {"echo": {"type": "echo"}}, "auth": {"admin_keys": [admin]}}))
    client = falcon.testing.TestClient(create_app(load_config(str(path), env={})))
    curls = _commands("curl")
    assert len(curls) >= 3
    for argv in curls:
        url = next(a for a in argv if "localhost:8000" in a)
        target = url.split("localhost:8000", 1)[1]
        route, _, query = target.partition("?")
        reply = client.simulate_get(route, query_string=query, headers={"Authorization": f"Bearer {admin}"})
        assert reply.status_code == 200, (target, reply.text)


def test_readme_lists_the_paths_google_genai_calls() -> None:
    """google-genai (1.x and later) calls ``/v1/models/{model}:generateContent`` by default."""
    row = next(line for line in README.splitlines() if ":generateContent" in line and line.startswith("|"))
    assert "/v1/models/" in row and "/v1beta/models/" in row
