"""The OpenAI codec's file and audio parts and its custom (freeform) tools, as tables: what each
accepted shape decodes to, which field each malformed shape is refused by, and what each
canonical part or tool is sent to an OpenAI-compatible provider as."""

from __future__ import annotations

from typing import Any

import pytest

from router.wire import openai
from router.wire.canonical import ChatRequest, CustomFormat, FilePart, ImagePart, Message, TextPart, Tool
from router.wire.codec import CodecError

PDF = "JVBERi0xLjQK"
WAV = "UklGRiQAAABXQVZF"


def user_parts(*parts: dict[str, Any]) -> list[Any]:
    body = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "see"}, *parts]}]}
    return openai.decode_request(body).messages[0].parts[1:]


def refused(body: dict[str, Any]) -> CodecError:
    with pytest.raises(CodecError) as caught:
        openai.decode_request(body)
    return caught.value


# ---- file and audio parts, decoded ----------------------------------------------------------------


@pytest.mark.parametrize(("part", "expected"), [
    ({"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "a.pdf"}},
     FilePart(data=PDF, media_type="application/pdf", filename="a.pdf")),
    ({"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}"}},
     FilePart(data=PDF, media_type="application/pdf")),
    ({"type": "file", "file": {"file_data": PDF, "filename": "report.pdf"}},
     FilePart(data=PDF, media_type="application/pdf", filename="report.pdf")),
    ({"type": "file", "file": {"file_data": PDF}}, FilePart(data=PDF)),
    ({"type": "file", "file": {"file_id": "file-abc", "filename": "notes.txt"}},
     FilePart(file_id="file-abc", filename="notes.txt")),
    ({"type": "file", "file": {"file_id": "file-abc"}}, FilePart(file_id="file-abc")),
    ({"type": "file", "file": {"file_data": "", "file_id": "file-abc"}}, FilePart(file_id="file-abc")),
    ({"type": "file", "file": {"file_data": PDF, "file_id": "file-abc"}}, FilePart(data=PDF)),
    ({"type": "input_audio", "input_audio": {"data": WAV, "format": "wav"}}, FilePart(data=WAV, media_type="audio/wav")),
    ({"type": "input_audio", "input_audio": {"data": WAV, "format": "mp3"}},
     FilePart(data=WAV, media_type="audio/mpeg")),
    ({"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}, FilePart(data="", media_type="audio/wav")),
    ({"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}},
     ImagePart(url="https://example.invalid/a.png")),
    ({"type": "image_url", "image_url": "https://example.invalid/a.png"}, ImagePart(url="https://example.invalid/a.png")),
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
     ImagePart(data="iVBO", media_type="image/png")),
    ({"type": "image_url", "image_url": {"url": ""}}, ImagePart(url="")),
])
def test_file_audio_and_image_parts_decode(part: dict[str, Any], expected: FilePart | ImagePart) -> None:
    assert user_parts(part) == [expected]


@pytest.mark.parametrize(("part", "param", "says"), [
    ({"type": "file"}, "messages[0].content[1].file", "required field is missing"),
    ({"type": "file", "file": "file-abc"}, "messages[0].content[1].file", "expected an object, got string"),
    ({"type": "file", "file": {}}, "messages[0].content[1].file", "needs file_data or file_id"),
    ({"type": "file", "file": {"file_data": "", "file_id": ""}}, "messages[0].content[1].file",
     "needs file_data or file_id"),
    ({"type": "file", "file": {"filename": "a.pdf"}}, "messages[0].content[1].file", "needs file_data or file_id"),
    ({"type": "file", "file": {"file_data": 5}}, "messages[0].content[1].file.file_data", "expected a string, got number"),
    ({"type": "file", "file": {"file_id": ["x"]}}, "messages[0].content[1].file.file_id", "expected a string, got array"),
    ({"type": "file", "file": {"file_id": "f", "filename": 1}}, "messages[0].content[1].file.filename", "expected a string, got number"),
    ({"type": "input_audio"}, "messages[0].content[1].input_audio", "required field is missing"),
    ({"type": "image_url", "image_url": 3}, "messages[0].content[1].image_url", "expected an object, got number"),
    ({"type": "image_url", "image_url": {}}, "messages[0].content[1].image_url.url", "required field is missing"),
    ({"type": "input_audio", "input_audio": {"data": WAV}}, "messages[0].content[1].input_audio.format", "required field is missing"),
    ({"type": "input_audio", "input_audio": {"data": WAV, "format": "ogg"}},
     "messages[0].content[1].input_audio.format", "expected one of wav, mp3, got 'ogg'"),
    ({"type": "input_audio", "input_audio": {"format": "wav"}}, "messages[0].content[1].input_audio.data", "required field is missing"),
])
def test_malformed_file_and_audio_parts_are_refused_naming_the_field(part: dict[str, Any], param: str,
                                                                      says: str) -> None:
    err = refused({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}, part]}]})
    assert err.param == param
    assert err.message == f"{param}: {says}"


@pytest.mark.parametrize("role", ["system", "assistant", "tool"])
def test_files_are_only_taken_from_users(role: str) -> None:
    message: dict[str, Any] = {"role": role, "content": [{"type": "file", "file": {"file_id": "f"}}]}
    if role == "tool":
        message["tool_call_id"] = "c1"
    err = refused({"model": "m", "messages": [message]})
    assert err.param == "messages[0].content[0].type"


# ---- file and audio parts, encoded ----------------------------------------------------------------


@pytest.mark.parametrize(("part", "encoded"), [
    (FilePart(data=WAV, media_type="audio/wav"), {"type": "input_audio", "input_audio": {"data": WAV, "format": "wav"}}),
    (FilePart(data=WAV, media_type="audio/mpeg", filename="a.mp3"),
     {"type": "input_audio", "input_audio": {"data": WAV, "format": "mp3"}}),
    (FilePart(data=PDF, media_type="application/pdf", filename="a.pdf"),
     {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}", "filename": "a.pdf"}}),
    (FilePart(data=PDF, media_type="application/pdf"),
     {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}"}}),
    (FilePart(data=PDF), {"type": "file", "file": {"file_data": PDF}}),
    (FilePart(data=PDF, filename="blob"), {"type": "file", "file": {"file_data": PDF, "filename": "blob"}}),
    (FilePart(data="", media_type="audio/wav"), {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}),
    (FilePart(file_id="file-abc"), {"type": "file", "file": {"file_id": "file-abc"}}),
    (FilePart(file_id="file-abc", filename="n.txt"), {"type": "file", "file": {"file_id": "file-abc", "filename": "n.txt"}}),
    (FilePart(file_id="file-abc", media_type="audio/wav"), {"type": "file", "file": {"file_id": "file-abc"}}),
    (FilePart(data=PDF, file_id="file-abc"), {"type": "file", "file": {"file_data": PDF}}),
    (FilePart(), {"type": "file", "file": {}}),
])
def test_file_parts_encode(part: FilePart, encoded: dict[str, Any]) -> None:
    req = ChatRequest(model="m", messages=[Message("user", [TextPart("see"), part])])
    body = openai.encode_request(req)
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "see"}, encoded]}]


def test_a_lone_file_part_is_sent_as_an_array() -> None:
    req = ChatRequest(model="m", messages=[Message("user", [FilePart(file_id="f")])])
    assert openai.encode_request(req)["messages"][0]["content"] == [{"type": "file", "file": {"file_id": "f"}}]


# ---- custom tools ---------------------------------------------------------------------------------


def tools_of(*tools: dict[str, Any]) -> list[Tool]:
    return openai.decode_request({"model": "m", "messages": [{"role": "user", "content": "x"}],
                                  "tools": list(tools)}).tools


@pytest.mark.parametrize(("custom", "expected"), [
    ({"name": "note"}, Tool(name="note", custom=CustomFormat())),
    ({"name": "note", "description": "Write a note"}, Tool(name="note", description="Write a note", custom=CustomFormat())),
    ({"name": "note", "format": {"type": "text"}}, Tool(name="note", custom=CustomFormat())),
    ({"name": "note", "format": {}}, Tool(name="note", custom=CustomFormat())),  # an empty format: the default
    ({"name": "patch", "format": {"type": "grammar", "grammar": {"syntax": "lark", "definition": "start: /.+/"}}},
     Tool(name="patch", custom=CustomFormat(syntax="lark", definition="start: /.+/"))),
    ({"name": "num", "description": "A number",
      "format": {"type": "grammar", "grammar": {"syntax": "regex", "definition": "[0-9]+"}}},
     Tool(name="num", description="A number", custom=CustomFormat(syntax="regex", definition="[0-9]+"))),
])
def test_custom_tools_decode(custom: dict[str, Any], expected: Tool) -> None:
    assert tools_of({"type": "custom", "custom": custom}) == [expected]


@pytest.mark.parametrize(("custom", "param", "says"), [
    (None, "tools[0].custom", "required field is missing"),
    ({}, "tools[0].custom.name", "required field is missing"),
    ({"name": ""}, "tools[0].custom.name", "must not be empty"),
    ({"name": 3}, "tools[0].custom.name", "expected a string, got number"),
    ({"name": "t", "description": 3}, "tools[0].custom.description", "expected a string, got number"),
    ({"name": "t", "format": "text"}, "tools[0].custom.format", "expected an object, got string"),
    ({"name": "t", "format": {"syntax": "lark"}}, "tools[0].custom.format.type", "required field is missing"),
    ({"name": "t", "format": {"type": "json"}}, "tools[0].custom.format.type", "expected one of text, grammar, got 'json'"),
    ({"name": "t", "format": {"type": "grammar"}}, "tools[0].custom.format.grammar", "required field is missing"),
    ({"name": "t", "format": {"type": "grammar", "grammar": {"definition": "x"}}},
     "tools[0].custom.format.grammar.syntax", "required field is missing"),
    ({"name": "t", "format": {"type": "grammar", "grammar": {"syntax": "ebnf", "definition": "x"}}},
     "tools[0].custom.format.grammar.syntax", "expected one of lark, regex, got 'ebnf'"),
    ({"name": "t", "format": {"type": "grammar", "grammar": {"syntax": "lark"}}},
     "tools[0].custom.format.grammar.definition", "required field is missing"),
    ({"name": "t", "format": {"type": "grammar", "grammar": {"syntax": "lark", "definition": 1}}},
     "tools[0].custom.format.grammar.definition", "expected a string, got number"),
])
def test_malformed_custom_tools_are_refused_naming_the_field(custom: Any, param: str, says: str) -> None:
    tool: dict[str, Any] = {"type": "custom"}
    if custom is not None:
        tool["custom"] = custom
    err = refused({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [tool]})
    assert err.param == param
    assert err.message == f"{param}: {says}"


def test_a_custom_tool_goes_to_the_provider_as_a_function_of_one_string() -> None:
    req = ChatRequest(model="m", messages=[Message("user", [TextPart("x")])],
                      tools=[Tool(name="patch", description="Edit", custom=CustomFormat("lark", "start: /.+/"))])
    (tool,) = openai.encode_request(req)["tools"]
    assert tool["type"] == "function" and tool["function"]["name"] == "patch"
    assert tool["function"]["parameters"] == {"type": "object", "properties": {"input": {"type": "string"}},
                                              "required": ["input"], "additionalProperties": False}
    assert tool["function"]["description"].startswith("Edit\n\n") and "start: /.+/" in tool["function"]["description"]
