"""YAML files with positions, validated against the JSON Schemas in ``schemas/``.

PyYAML's composer keeps a mark (line, column) on every node; we build plain Python values from the
node tree and remember the mark of every value by its JSON path, so that a schema error or a
grammar error inside a YAML string can point at the exact line and column of the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import yaml

from .errors import Location, RulesErrors, SchemaError

Path = tuple[Any, ...]


@dataclass(slots=True)
class YamlDocument:
    """A parsed YAML file: its value plus the location of every node, keyed by JSON path."""

    file: str
    text: str
    value: Any
    marks: dict[Path, tuple[int, int]] = field(default_factory=dict)  # path -> (line, col), 1-based
    styles: dict[Path, str | None] = field(default_factory=dict)  # scalar style (None = plain)
    key_marks: dict[Path, tuple[int, int]] = field(default_factory=dict)  # path of a mapping key -> its mark

    def location(self, path: Path) -> Location:
        """Location of the node at ``path``, or of its nearest ancestor that has one."""
        p = tuple(path)
        while p not in self.marks and p:
            p = p[:-1]
        line, col = self.marks.get(p, (1, 1))
        return Location(self.file, line, col, self.text)

    def string_origin(self, path: Path) -> tuple[Location, bool]:
        """Where the string value at ``path`` starts, and whether offsets inside map 1:1.

        Plain and single-line quoted scalars map columns exactly (quoted ones shift by the quote);
        folded/literal/multi-line scalars only map to their first line.
        """
        loc = self.location(path)
        style = self.styles.get(tuple(path))
        if style in ('"', "'"):
            return Location(loc.file, loc.line, loc.column + 1, loc.text), True
        return loc, style is None


_YAML11_BOOL_WORDS = frozenset({"on", "off", "yes", "no", "y", "n"})


def _key(node: yaml.Node, loader: yaml.SafeLoader) -> Any:
    """A mapping key. YAML 1.1 (PyYAML) reads a bare ``on``/``off``/``yes``/``no`` as a boolean; as
    a key that is never what a person means (a rule's ``on:`` map), so those keys stay words."""
    if (isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:bool" and node.style is None
            and node.value.lower() in _YAML11_BOOL_WORDS):
        return node.value
    return loader.construct_object(node, deep=True)


def _construct(node: yaml.Node, path: Path, doc: YamlDocument, loader: yaml.SafeLoader) -> Any:
    doc.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _key(key_node, loader)
            if isinstance(key, (list, dict)):
                key = str(key)
            doc.key_marks[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _construct(value_node, path + (key,), doc, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, path + (i,), doc, loader) for i, item in enumerate(node.value)]
    doc.styles[path] = node.style or None
    return loader.construct_object(node, deep=True)


def parse_yaml(text: str, file: str = "<input>") -> YamlDocument:
    """Parse one YAML document; a YAML syntax error becomes a located :class:`SchemaError`."""
    doc = YamlDocument(file=file, text=text, value=None)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        doc.value = None if node is None else _construct(node, (), doc, loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise SchemaError(f"YAML syntax: {problem}", Location(file, line, col, text)) from None
    except yaml.YAMLError as exc:  # pragma: no cover - non-marked YAML errors are rare
        raise SchemaError(f"YAML syntax: {exc}", Location(file, 1, 1, text)) from None
    finally:
        loader.dispose()
    return doc


@cache
def load_schema(name: str) -> dict[str, Any]:
    """A schema shipped in the ``schemas`` package, e.g. ``config`` or ``rules``."""
    raw = resources.files("schemas").joinpath(f"{name}.schema.json").read_text("utf-8")
    return json.loads(raw)


@cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _describe(error: jsonschema.ValidationError) -> tuple[str, str | None]:
    """A short message and an 'expected' hint for a schema violation."""
    where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        return f"{where}: {error.message}", ("one of " + ", ".join(allowed)) if allowed else None
    if error.validator == "type":
        return f"{where}: {error.instance!r} has the wrong type", str(error.validator_value)
    if error.validator == "anyOf" and all(set(sub) == {"required"} for sub in error.validator_value):
        names = [name for sub in error.validator_value for name in sub["required"]]
        return f"{where}: needs at least one of " + ", ".join(names), None
    if error.validator == "enum":
        return f"{where}: {error.instance!r} is not allowed", "one of " + ", ".join(map(str, error.validator_value))
    return f"{where}: {error.message}", None


def _error_location(doc: YamlDocument, error: jsonschema.ValidationError) -> Location:
    """Point at the offending key for unknown keys, else at the offending value."""
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        for key in error.instance:
            if key not in known and path + (key,) in doc.key_marks:
                line, col = doc.key_marks[path + (key,)]
                return Location(doc.file, line, col, doc.text)
    return doc.location(path)


def schema_errors(doc: YamlDocument, schema_name: str) -> list[tuple[tuple[Any, ...], SchemaError]]:
    """Every violation of a shipped schema with the path of the value it is about, in document
    order; the path lets a caller go on with the parts that are valid (``check`` compiles the
    rules without a schema error and reports both kinds in one run)."""
    out = []
    for error in sorted(_validator(schema_name).iter_errors(doc.value), key=lambda e: list(map(str, e.absolute_path))):
        message, expected = _describe(error)
        out.append((tuple(error.absolute_path), SchemaError(message, _error_location(doc, error), expected)))
    return out


def validate(doc: YamlDocument, schema_name: str) -> None:
    """Validate ``doc`` against a shipped schema; all violations are raised together, located."""
    errors = [error for _path, error in schema_errors(doc, schema_name)]
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise RulesErrors(errors)


def load_yaml_file(path: str, schema_name: str | None = None) -> YamlDocument:
    """Read, parse and (optionally) validate a YAML file."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    doc = parse_yaml(text, path)
    if schema_name:
        validate(doc, schema_name)
    return doc
