"""Loading rule files (``dsl/loader.py``): every error of a rule comes out in one run, also when
the rule has several bad fields or a schema error beside them (issue 14, "check prints all
errors in one run")."""

from __future__ import annotations

from dsl.loader import load_rules_text


def _messages(text: str) -> list[str]:
    return [str(error) for error in load_rules_text(text, "r.yaml", known_backends=("a",)).errors]


def test_every_bad_field_of_one_rule_is_reported() -> None:
    errors = _messages("rules:\n  - name: r\n    when: model ==\n    route: zz:foo\n    limits: rpm(abc)\n")
    assert len(errors) == 3, errors
    assert any("unexpected end of input in condition" in e for e in errors)
    assert any("unknown backend 'zz'" in e for e in errors)
    assert any("rpm: amount: 'abc' is not valid" in e for e in errors)


def test_a_rule_with_a_schema_error_still_has_its_other_fields_compiled() -> None:
    loaded = load_rules_text("rules:\n  - name: r\n    colour: red\n    limits: rpm(abc)\n"
                             "  - name: s\n    priority: high\n    when: model ==\n    route: a\n",
                             "r.yaml", known_backends=("a",))
    errors = [str(error) for error in loaded.errors]
    assert any("'colour' was unexpected" in e for e in errors)
    assert any("rpm: amount: 'abc' is not valid" in e for e in errors)
    assert any("'high' has the wrong type" in e for e in errors)
    assert any("unexpected end of input in condition" in e for e in errors)
    assert len(errors) == 4 and loaded.rules == []


def test_a_field_the_schema_refused_is_not_compiled() -> None:
    errors = _messages("rules:\n  - name: r\n    when: 5\n    route: a\n")
    assert len(errors) == 1 and "when" in errors[0], errors


def test_good_rules_beside_bad_ones_are_kept() -> None:
    loaded = load_rules_text("rules:\n  - name: bad\n    route: zz\n    limits: rpm(abc)\n"
                             "  - name: good\n    route: a\n", "r.yaml", known_backends=("a",))
    assert [rule.name for rule in loaded.rules] == ["good"] and len(loaded.errors) == 2
