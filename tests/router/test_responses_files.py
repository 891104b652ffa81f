"""Responses ``input_file`` parts and images by file id, end to end: each provider gets what it
reads (a Responses backend everything as sent, OpenAI chat a ``file`` part, Anthropic ``document``
blocks, Gemini inline or file data), and what it cannot read is a 400 in OpenAI's error shape
naming the file and the backend, before anything is sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fakes.fixtures import fake_provider  # noqa: F401  (fixture)
from fakes.provider import FakeProvider
from proxy_support import write_config
from router.app import ProxyApp, create_app
from test_stream_limits import served

PDF = "JVBERi0xLjQK"  # "%PDF-1.4\n"
INLINE = {"type": "input_file", "filename": "a.pdf", "file_data": f"data:application/pdf;base64,{PDF}"}
BY_URL = {"type": "input_file", "file_url": "https://example.com/b.pdf"}
BY_ID = {"type": "input_file", "file_id": "file-abc123"}
IMAGE_BY_ID = {"type": "input_image", "file_id": "file-img456", "detail": "auto"}


def proxy(tmp_path: Path, fake: FakeProvider) -> ProxyApp:
    config = write_config(tmp_path, backends={
        "resp": {"type": "openai", "api": "responses", "base_url": f"{fake.url}/v1", "api_key": fake.key("responses")},
        "oai": {"type": "openai", "base_url": f"{fake.url}/v1", "api_key": fake.key("openai")},
        "ant": {"type": "anthropic", "base_url": fake.url, "api_key": fake.key("anthropic")},
        "gem": {"type": "gemini", "gemini_api_base_url": fake.url, "api_key": fake.key("gemini")},
    }, default_backend="oai")
    return create_app(config, disable_auth=True)


def body(model: str, *parts: dict[str, Any]) -> dict[str, Any]:
    return {"model": model, "input": [{"role": "user", "content": [{"type": "input_text", "text": "read"}, *parts]}]}


async def test_a_responses_backend_gets_every_file_part_as_sent(tmp_path: Path, fake_provider: FakeProvider) -> None:
    async with served(proxy(tmp_path, fake_provider)) as client:
        result = await client.post("/v2/responses", json=body("resp:o-pro", INLINE, BY_URL, BY_ID, IMAGE_BY_ID))
    assert result.status_code == 200, result.text
    assert fake_provider.last.body["input"][0]["content"][1:] == [INLINE, BY_URL, BY_ID, IMAGE_BY_ID]


@pytest.mark.parametrize("model, sent_parts, expected", [
    ("oai:gpt-4o", lambda b: b["messages"][0]["content"][1:], [
        {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "a.pdf"}},
        {"type": "file", "file": {"file_id": "file-abc123"}}]),
    ("ant:claude-test", lambda b: b["messages"][0]["content"][1:], [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF}},
        {"type": "document", "source": {"type": "url", "url": "https://example.com/b.pdf"}}]),
    ("gem:gemini-test", lambda b: b["contents"][0]["parts"][1:], [
        {"inlineData": {"mimeType": "application/pdf", "data": PDF}},
        {"fileData": {"mimeType": "application/pdf", "fileUri": "https://example.com/b.pdf"}}]),
], ids=["openai-chat", "anthropic", "gemini"])
async def test_files_reach_each_provider_in_its_own_form(tmp_path: Path, fake_provider: FakeProvider, model: str,
                                                         sent_parts: Any, expected: list[dict[str, Any]]) -> None:
    parts = (INLINE, BY_ID) if model.startswith("oai:") else (INLINE, BY_URL)
    async with served(proxy(tmp_path, fake_provider)) as client:
        result = await client.post("/v2/responses", json=body(model, *parts))
    assert result.status_code == 200, result.text
    assert sent_parts(fake_provider.last.body) == expected


@pytest.mark.parametrize("model, part, named", [
    ("oai:gpt-4o", BY_URL, "https://example.com/b.pdf"),
    ("oai:gpt-4o", IMAGE_BY_ID, "file-img456"),
    ("ant:claude-test", BY_ID, "file-abc123"),
    ("ant:claude-test", IMAGE_BY_ID, "file-img456"),
    ("gem:gemini-test", BY_ID, "file-abc123"),
    ("gem:gemini-test", IMAGE_BY_ID, "file-img456"),
])
async def test_a_file_the_provider_cannot_read_is_a_400_naming_it_and_the_backend(
        tmp_path: Path, fake_provider: FakeProvider, model: str, part: dict[str, Any], named: str) -> None:
    async with served(proxy(tmp_path, fake_provider)) as client:
        for stream in (False, True):
            result = await client.post("/v2/responses", json={**body(model, part), "stream": stream})
            assert result.status_code == 400, result.text
            error = result.json()["error"]
            assert named in error["message"] and repr(model.split(":")[0]) in error["message"], error
            assert error["type"] == "invalid_request_error" and set(error) == {"message", "type", "param", "code"}
    assert fake_provider.generations == [], "nothing was sent"
