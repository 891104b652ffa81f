"""The command line explains itself: ``--help`` lists the commands and the defaults, ``--version``,
a misspelt command gets the nearest name, and ``check`` reports every problem in one run."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.cli import main, version


def test_help_lists_every_command_and_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "check" in out and "serve" in out  # the subcommands, with what they do
    assert "default: 127.0.0.1" in out and "default: 8000" in out
    assert "--version" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == f"llm-interactive-proxy {version()}" and version()[0].isdigit()


@pytest.mark.parametrize("typed,meant", [("chek", "check"), ("serv", "serve"), ("checks", "check")])
def test_misspelt_command_gets_did_you_mean(typed: str, meant: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([typed]) == 2
    err = capsys.readouterr().err
    assert f"unknown command '{typed}'" in err and f"did you mean '{meant}'?" in err


def test_unknown_command_without_a_near_name_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["xyzzy"]) == 2
    err = capsys.readouterr().err
    assert "did you mean" not in err and "commands: serve, check" in err


def _write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_check_reports_every_error_in_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Missing ``${VAR}``s (each of them), a schema error, a syntax error, an unknown backend and a
    duplicate name whose duplicate also has an error: all printed together."""
    for name in ("MISSING_ONE_14", "MISSING_TWO_14"):
        monkeypatch.delenv(name, raising=False)
    config = _write(tmp_path / "config.yaml", """\
backends:
  echo: {type: echo}
  up: {type: openai, api_key: "${MISSING_ONE_14}", base_url: "${MISSING_TWO_14}"}
""")
    _write(tmp_path / "routes.d" / "10-a.yaml", """\
rules:
  - name: one
    when: model == "x"
    route: echo
  - name: one
    when: model ==
    route: echo
  - name: two
    bogus: 1
    route: echo
  - name: three
    route: nowhere
""")
    assert main(["check", "--config", config]) == 1
    err = capsys.readouterr().err
    assert "MISSING_ONE_14 is not set" in err and "MISSING_TWO_14 is not set" in err
    assert "'bogus' was unexpected" in err                          # schema
    assert "unexpected end of input in condition" in err            # syntax
    assert "unknown backend 'nowhere'" in err                       # compile
    assert "duplicate rule name 'one'" in err                       # the duplicate has a syntax error too
    assert "6 error(s): 2 in the config, 4 in the rules" in err


def test_check_goes_on_to_the_rules_when_the_config_breaks_its_schema(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(tmp_path / "config.yaml", "backends:\n  echo: {type: echo}\nproxy_timeout: soon\n")
    _write(tmp_path / "routes.d" / "10.yaml", "rules:\n  - name: r\n    route: nowhere\n")
    assert main(["check", "--config", config]) == 1
    err = capsys.readouterr().err
    assert "proxy_timeout" in err and "unknown backend 'nowhere'" in err


def test_check_warns_about_a_missing_routes_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(tmp_path / "config.yaml", "backends:\n  echo: {type: echo}\nroutes_dir: rotues.d\n")
    assert main(["check", "--config", config]) == 0  # no rules is a valid set-up, but it is said
    err = capsys.readouterr().err
    assert f"routes_dir {tmp_path / 'rotues.d'} does not exist" in err
    assert "0 rule(s) from no routes_dir, 1 warning(s)" in err


def test_check_quotes_no_key_of_a_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad line holding a literal key is quoted redacted, as a rejected reload quotes it; before,
    ``check`` printed ``api_key: sk-live-…`` to the terminal or CI log. A rule file quoting a key the
    (valid) config holds is redacted too."""
    config = _write(tmp_path / "config.yaml", "backends:\n  echo: {type: echo}\n"
                    "  up: {type: openai, api_key: sk-live-literal0123456789abcdef, timeout: soon}\n")
    assert main(["check", "--config", config]) == 1
    err = capsys.readouterr().err
    assert "'soon'" in err and "timeout" in err  # the line is still quoted ...
    assert "sk-live-literal" not in err and "[redacted]" in err  # ... without its key
    known = "opaque-known-key-0123456789"  # no credential shape: only the config's own value finds it
    config = _write(tmp_path / "config.yaml", "backends:\n  echo: {type: echo}\n"
                    f"  up: {{type: openai-compatible, base_url: 'http://127.0.0.1:9/v1', api_key: {known}}}\n")
    _write(tmp_path / "routes.d" / "10.yaml", f"rules:\n  - name: r\n    route: nowhere  # {known}\n")
    assert main(["check", "--config", config]) == 1
    err = capsys.readouterr().err
    assert "unknown backend 'nowhere'" in err and known not in err, err


def test_check_locates_a_bad_max_response_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The reply-size cap (``backends.<name>.max_response_bytes``) is checked like every setting:
    too small, or not a number of bytes, each error at its file:line:col."""
    config = _write(tmp_path / "config.yaml", "backends:\n  echo: {type: echo}\n"
                    "  up:\n    type: openai\n    max_response_bytes: 1000\n"
                    "  down:\n    type: openai\n    max_response_bytes: 32MiB\n")
    assert main(["check", "--config", config]) == 1
    err = capsys.readouterr().err
    assert f"{config}:5:25: error: backends/up/max_response_bytes: 1000 is less than the minimum of 65536" in err
    assert f"{config}:8:25: error: backends/down/max_response_bytes: '32MiB' has the wrong type" in err
