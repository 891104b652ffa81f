"""Cut the operations this proxy serves out of OpenAI's published ``openapi.yaml``.

The full document (~3 MB) describes the whole OpenAI platform; the conformance test needs only
the operations the proxy implements and the component schemas they reference (followed
transitively). Run it against a checkout of ``openai/openai-openapi`` to refresh the pinned copy::

    python tests/router/openapi/extract_subset.py path/to/openapi.yaml COMMIT > tests/router/openapi/openai-subset.yaml
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

# (path, method) pairs the proxy serves under /v1 and /v2.
OPERATIONS = (
    ("/chat/completions", "post"),
    ("/models", "get"),
    ("/responses", "post"),
    ("/responses/{response_id}", "get"),
)


def _refs(node: Any) -> set[str]:
    """Every ``$ref`` string below ``node``."""
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str):
                found.add(ref)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def subset(document: dict[str, Any], commit: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, method in OPERATIONS:
        paths.setdefault(path, {})[method] = document["paths"][path][method]
    components: dict[str, dict[str, Any]] = {}
    pending = _refs(paths)
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, _, section, name = ref.split("/", 3)  # "#/components/<section>/<name>"
        target = document["components"][section][name]
        components.setdefault(section, {})[name] = target
        pending |= _refs(target)
    components["securitySchemes"] = document["components"]["securitySchemes"]
    info = dict(document["info"])
    info["x-subset-of"] = {
        "repository": "https://github.com/openai/openai-openapi",
        "file": "openapi.yaml",
        "commit": commit,
        "version": document["info"]["version"],
        "licence": "MIT (Copyright (c) OpenAI)",
        "operations": [f"{m.upper()} {p}" for p, m in OPERATIONS],
    }
    return {
        "openapi": document["openapi"], "info": info, "servers": document["servers"],
        "security": document.get("security", []), "paths": paths,
        "components": {k: dict(sorted(v.items())) for k, v in sorted(components.items())},
    }


def main(argv: list[str]) -> None:
    with open(argv[1], encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    yaml.dump(subset(document, argv[2]), sys.stdout, sort_keys=False, allow_unicode=True, width=100,
              Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper))


if __name__ == "__main__":
    main(sys.argv)
