"""Codec errors carry no HTTP status (``router/wire/codec.py``): the HTTP edge answers a body the
codec cannot read with a 400 ``invalid_request`` naming the field, in the client's error shape,
whichever resource called the codec (chat, streaming, count-tokens)."""

from __future__ import annotations

from typing import Any

import pytest

from proxy_support import error_message

# (path, front end, body with a wrong-typed field, the field's path)
CASES: list[tuple[str, str, dict[str, Any], str]] = [
    ("/v2/chat/completions", "openai",
     {"model": "gpt-4", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ("/v2/messages", "anthropic",
     {"model": "claude", "max_tokens": "ten", "messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
    ("/v2/messages/count_tokens", "anthropic",
     {"model": "claude", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ("/v2/models/gpt-4:generateContent", "gemini",
     {"contents": [{"role": "user", "parts": [{"text": 5}]}]}, "contents[0].parts[0].text"),
    ("/v2/models/gpt-4:streamGenerateContent", "gemini",
     {"contents": [{"role": "user", "parts": [{"text": 5}]}]}, "contents[0].parts[0].text"),
    ("/v2/models/gpt-4:countTokens", "gemini",
     {"contents": [{"role": "user", "parts": [{"text": 5}]}]}, "contents[0].parts[0].text"),
]


@pytest.mark.parametrize("path,frontend,body,param", CASES, ids=[c[0] for c in CASES])
def test_a_codec_error_is_a_400_in_the_clients_shape(client, path, frontend, body, param):
    result = client.simulate_post(path, json=body)
    assert result.status_code == 400, result.text
    payload = result.json
    message = error_message(frontend, payload)
    assert message.startswith(f"{param}: "), message  # names the field
    if frontend == "openai":
        assert payload["error"]["type"] == "invalid_request_error" and payload["error"]["param"] == param
    elif frontend == "anthropic":
        assert payload["error"]["type"] == "invalid_request_error"
    else:
        assert payload["error"]["code"] == 400 and payload["error"]["status"] == "INVALID_ARGUMENT"
