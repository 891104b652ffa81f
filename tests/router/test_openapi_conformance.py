"""The OpenAI front end checked against OpenAI's own API description, by schemathesis.

``openapi/openai-subset.yaml`` is the part of ``openapi.yaml`` from github.com/openai/openai-openapi
(MIT licence; commit and version in its ``info.x-subset-of``) that describes the operations this
proxy serves; ``openapi/extract_subset.py`` cuts it from a newer copy. Schemathesis generates
requests from it (valid ones: the ``positive`` mode) for ``POST /chat/completions``, ``GET /models``,
``POST /responses`` and ``GET /responses/{response_id}`` (half of those ask for a response the
proxy stored) and sends them to a live proxy on the echo backend. Each reply must:

- not be a server error (``not_a_server_error``);
- match the description's response schema, JSON and every SSE event
  (``response_schema_conformance``);
- when it is a 4xx (the description documents only 200 and 429, so every 4xx is "undocumented"),
  be in OpenAI's error shape and be one of the intended refusals listed in ``INTENDED_REFUSALS``,
  each with its reason. A valid request refused for any other reason fails the test.

The example counts bound the module's CPU time to about 21 s (measured with ``time``, user CPU of
the test process, which also runs the proxy), so it stays within a minute on an idle CI machine.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.openapi.checks import UndefinedStatusCode  # noqa: F401  (documents what is not checked)
from schemathesis.specs.openapi.checks import response_schema_conformance

from proxy_support import API_KEY, LiveServer, write_config
from router.app import create_app

SPEC_PATH = Path(__file__).parent / "openapi" / "openai-subset.yaml"

# Requests the description allows and the proxy refuses on purpose: (pattern of the error
# message, why). Everything else valid must be served.
INTENDED_REFUSALS: list[tuple[str, str]] = [
    (r"^model: required field is missing",
     "the model decides the route (backend:model); the description lets a Responses request leave it to a "
     "stored prompt, which the proxy does not keep"),
    (r"^input: required field is missing|^input: must contain at least one input item",
     "a Responses request without input has nothing to send (the proxy keeps no stored prompts)"),
    (r"(?s)^No response with id '.*' found\.$",
     "GET of a response id the proxy never stored (or no longer keeps) for this caller: OpenAI's 404 too"),
    (r"(?s)^Previous response with id '.*' not found\.$",
     "a previous_response_id the proxy never stored (or no longer keeps) for this caller: OpenAI's own 400"),
    (r"^input\[\d+\]\.type: unknown input item type ",
     "items of OpenAI-hosted features the proxy cannot carry to any provider (compaction triggers, "
     "computer calls, ...); the hosted-tool items it can carry reach a Responses backend (README, Codex CLI)"),
    (r"^max_(completion_|output_)?tokens: must be >= 1",
     "a token cap below 1 cannot produce a reply; OpenAI refuses it too, the proxy before any provider"),
    (r"^(tools|input)\[\d+\]\.((function|custom)\.)?name: must not be empty",
     "a tool without a name cannot be called, nor a call of no tool be sent back; every provider refuses them"),
    (r"^messages\[\d+\]\.content\[\d+\]\.file: needs file_data or file_id",
     "a file part with neither data nor an id carries nothing to send"),
    (r"^tool_choice\.allowed_tools\.tools\[\d+\]: expected a tool like",
     "an allowed tool that names no function cannot be allowed"),
    (r"^input\[\d+\]\.call_id: (required field is missing|expected a string, got null)",
     "a tool call or output without call_id (the description lets it be null) cannot be paired with its "
     "output or call; every provider pairs them by id (Gemini by name and order, which the proxy derives from ids)"),
    (r"^input\[\d+\]\.(content|output)\[\d+\](\.image_url)?: an input_(image needs image_url or file_id|file needs file_data)",
     "an image or file part with neither data, URL nor file id (the description makes all optional) carries "
     "nothing to send"),
]

# Operations checked: (path, method, number of generated examples).
OPERATIONS = [("/chat/completions", "POST", 200), ("/models", "GET", 10), ("/responses", "POST", 150),
              ("/responses/{response_id}", "GET", 10)]


def _spec() -> dict[str, Any]:
    raw = yaml.load(SPEC_PATH.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    # The model id is the proxy's routing key: the description allows any string (empty too),
    # the proxy routes the ids it can (an empty id is refused before routing). Generate ids
    # that look like model ids, so the cases exercise the rest of the request.
    raw["components"]["schemas"]["ModelIdsShared"] = {"type": "string", "pattern": "^[a-z][a-z0-9.-]{0,20}$"}
    # A Responses request may leave model and input to a stored prompt; the proxy keeps none and
    # refuses such requests (INTENDED_REFUSALS). Generate requests that carry both, so the
    # cases exercise the rest of the request instead of that one refusal.
    raw["components"]["schemas"]["CreateResponse"]["allOf"].append({"required": ["model", "input"]})
    return raw


SPEC = _spec()
SCHEMA = schemathesis.openapi.from_dict(SPEC)
ERROR_SHAPE = {**SPEC["components"]["schemas"]["ErrorResponse"], "components": SPEC["components"]}


@pytest.fixture(scope="module")
def proxy_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = write_config(tmp_path_factory.mktemp("openapi"), auth={"api_keys": [API_KEY]})
    server = LiveServer(create_app(config)).start()
    try:
        yield f"{server.url}/v2"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stored_id(proxy_url: str) -> str:
    """A response the proxy keeps for this test's key: half the generated GETs ask for it."""
    import httpx

    made = httpx.post(f"{proxy_url}/responses", json={"model": "echo", "input": "keep this"},
                      headers={"Authorization": f"Bearer {API_KEY}"})
    assert made.status_code == 200, made.text
    return str(made.json()["id"])


def _intended(message: str) -> bool:
    return any(re.search(pattern, message) for pattern, _why in INTENDED_REFUSALS)


# Schemathesis 4.32 checks a text/event-stream reply's raw events ({"event", "data"}) against the
# description's schema, which describes each event's JSON data: so streams are checked here, each
# ``data:`` line parsed and validated against the same schema.
STREAM_SCHEMAS = {"/chat/completions": "CreateChatCompletionStreamResponse", "/responses": "ResponseStreamEvent"}


def _nullable(node: Any) -> Any:
    """OpenAPI's ``nullable: true`` (used in this 3.1 document) as JSON Schema's type ``null``."""
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable(value) for key, value in node.items()}
    if node.pop("nullable", False):
        if "type" in node:
            types = node["type"] if isinstance(node["type"], list) else [node["type"]]
            node["type"] = [*types, "null"]
        if "enum" in node:
            node["enum"] = [*node["enum"], None]
        if "$ref" in node or "allOf" in node or "anyOf" in node or "oneOf" in node:
            node = {"anyOf": [node, {"type": "null"}]}
    return node


EVENT_COMPONENTS = _nullable(SPEC["components"])


def _check_events(response: Any, path: str) -> None:
    schema = {"$ref": f"#/components/schemas/{STREAM_SCHEMAS[path]}", "components": EVENT_COMPONENTS}
    events = [line[6:] for line in response.content.decode("utf-8").splitlines() if line.startswith("data: ")]
    assert events and events[-1 if path == "/responses" else -2]  # something before the end
    for data in events:
        if data != "[DONE]":
            jsonschema.validate(json.loads(data), schema)


def _outline(items: Any) -> str:
    """The items of a Responses input as type and keys (generated values are unreadable)."""
    if not isinstance(items, list):
        return repr(items)[:300]
    return "; ".join(f"{item.get('type')}: {sorted(k for k in item if k.isascii())}" if isinstance(item, dict)
                     else repr(item)[:60] for item in items)


def _check_refusal(response: Any, sent: Any) -> None:
    body = response.json()
    jsonschema.validate(body, ERROR_SHAPE)  # OpenAI's error shape, from the same description
    assert _intended(body["error"]["message"]), \
        f"a valid request was refused: {body['error']}\ninput: {_outline(sent.get('input'))}"


@pytest.mark.parametrize("path, method, examples", OPERATIONS, ids=[f"{m} {p}" for p, m, _ in OPERATIONS])
def test_generated_requests_get_replies_the_description_allows(proxy_url: str, stored_id: str, path: str,
                                                                method: str, examples: int) -> None:
    operation = SCHEMA[path][method]
    seen: dict[int, int] = {}
    count = [0]

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {API_KEY}"}
        count[0] += 1
        if "response_id" in (case.path_parameters or {}) and count[0] % 2:
            case.path_parameters = {**case.path_parameters, "response_id": stored_id}  # one it has
        response = case.call(base_url=proxy_url, timeout=30)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        streamed = response.headers.get("content-type", [""])[0].startswith("text/event-stream")
        case.validate_response(response, checks=[not_a_server_error] if streamed
                               else [not_a_server_error, response_schema_conformance])
        if streamed:
            _check_events(response, path)
        if 400 <= response.status_code < 500:
            _check_refusal(response, case.body if isinstance(case.body, dict) else {})

    check()
    assert seen.get(200, 0) > 0, f"no generated request was served: {seen}"


@pytest.mark.parametrize("message, intended", [
    ("max_tokens: must be >= 1, got 0", True),
    ("messages[0].role: expected one of system, developer, user, assistant, tool, function, got 'x'", False),
    ("messages: no message left to send after removing commands", False),
])
def test_only_the_listed_refusals_count_as_intended(message: str, intended: bool) -> None:
    assert _intended(message) is intended


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_responses_replies_match_the_description(proxy_url: str, stream: bool) -> None:
    import httpx

    body = {"model": "echo", "input": [{"role": "developer", "content": "be brief"},
                                       {"role": "user", "content": "hello"}], "stream": stream}
    response = httpx.post(f"{proxy_url}/responses", json=body, headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 200, response.text
    if stream:
        _check_events(response, "/responses")
    else:
        jsonschema.validate(response.json(), {"$ref": "#/components/schemas/Response",
                                              "components": EVENT_COMPONENTS})
