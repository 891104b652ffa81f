"""Helpers shared by the three codecs: strict field access, images, ids, usage sums.

Decoders read client JSON through these getters so that any wrong type or missing field becomes a
:class:`CodecError` that names the field (``messages[2].content[0].type``) instead of a KeyError
(the HTTP edge answers it with a 400).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import mimetypes
import uuid
from typing import Any, NoReturn

from router.wire import fastjson
from router.wire.canonical import ChatRequest, FilePart, ImagePart, Message, TextPart, Tool, ToolCallPart, ToolResultPart
from router.wire.codec import CodecError

_MISSING = object()

# Model names: real ids (``openrouter:anthropic/claude-3.5-sonnet``, Bedrock ARNs, fine-tune ids)
# stay well under 200 characters. Checked here, where a client's model enters; listed with the
# other bounds in ``router/bounds.py``.
MAX_MODEL_CHARS = 256


def fail(param: str, message: str) -> NoReturn:
    raise CodecError(param, f"{param}: {message}")


def too_long(what: str, size: int, limit: int, unit: str = "characters") -> str:
    """The one wording of every size refusal (``router/bounds.py`` uses it too): what, how big, the limit."""
    return f"{what} is {size} {unit} long; at most {limit} are accepted"


def check_model(model: str, param: str = "model") -> str:
    """``model`` unchanged, or a :class:`CodecError` naming ``param`` when it is over
    :data:`MAX_MODEL_CHARS` (it is kept in usage rows, metric labels and the planner's memo)."""
    if len(model) > MAX_MODEL_CHARS:
        fail(param, too_long("the model name", len(model), MAX_MODEL_CHARS))
    return model


def field_path(prefix: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else key


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def expect_object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        fail(param or "body", f"expected an object, got {_type_name(value)}")
    return value


def _get(obj: dict[str, Any], key: str, prefix: str, required: bool) -> Any:
    value = obj.get(key, _MISSING)
    if value is _MISSING or (value is None and not required):
        if required:
            fail(field_path(prefix, key), "required field is missing")
        return _MISSING
    return value


def get_str(obj: dict[str, Any], key: str, prefix: str = "", required: bool = False) -> str | None:
    value = _get(obj, key, prefix, required)
    if value is _MISSING:
        return None
    if not isinstance(value, str):
        fail(field_path(prefix, key), f"expected a string, got {_type_name(value)}")
    return value


def get_int(obj: dict[str, Any], key: str, prefix: str = "", required: bool = False,
            minimum: int | None = None) -> int | None:
    value = _get(obj, key, prefix, required)
    if value is _MISSING:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        fail(field_path(prefix, key), f"expected an integer, got {_type_name(value)}")
    if minimum is not None and value < minimum:
        fail(field_path(prefix, key), f"must be >= {minimum}, got {value}")
    return value


def lenient_int(value: Any) -> int:
    """A count read from an upstream's response (token usage, stream indexes): the number, or 0.

    Unlike :func:`get_int`, which rejects a client's bad field (a CodecError), a provider's odd value
    (missing, null, a string, a boolean) must not fail a response that is otherwise fine.
    """
    if type(value) is int:  # what providers send
        return value
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def required_model(body: dict[str, Any], model: str | None) -> str:
    """The model from the URL path when given, else the body's non-empty ``model``, of a bounded
    length (it is kept in usage rows, metric labels and the planner's memo)."""
    model = model or get_str(body, "model", required=True)
    if not model:
        fail("model", "must not be empty")
    return check_model(model)


def nonempty_list(obj: dict[str, Any], key: str, what: str) -> list[Any]:
    """A required array that must hold at least one ``what``."""
    items = get_list(obj, key, required=True)
    if not items:
        fail(key, f"must contain at least one {what}")
    return items


def get_num(obj: dict[str, Any], key: str, prefix: str = "") -> float | None:
    value = _get(obj, key, prefix, False)
    if value is _MISSING:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        fail(field_path(prefix, key), f"expected a number, got {_type_name(value)}")
    return float(value)


def get_bool(obj: dict[str, Any], key: str, prefix: str = "") -> bool | None:
    value = _get(obj, key, prefix, False)
    if value is _MISSING:
        return None
    if not isinstance(value, bool):
        fail(field_path(prefix, key), f"expected true or false, got {_type_name(value)}")
    return value


def get_list(obj: dict[str, Any], key: str, prefix: str = "", required: bool = False) -> list[Any]:
    value = _get(obj, key, prefix, required)
    if value is _MISSING:
        return []
    if not isinstance(value, list):
        fail(field_path(prefix, key), f"expected an array, got {_type_name(value)}")
    return value


def get_obj(obj: dict[str, Any], key: str, prefix: str = "", required: bool = False) -> dict[str, Any] | None:
    value = _get(obj, key, prefix, required)
    if value is _MISSING:
        return None
    return expect_object(value, field_path(prefix, key))


def one_of(value: str | None, allowed: tuple[str, ...], param: str) -> str | None:
    if value is not None and value not in allowed:
        fail(param, f"expected one of {', '.join(allowed)}, got {value!r}")
    return value


def str_list(obj: dict[str, Any], key: str, prefix: str = "") -> list[str]:
    """A string or list of strings (``stop``), always returned as a list."""
    value = _get(obj, key, prefix, False)
    if value is _MISSING:
        return []
    if isinstance(value, str):
        return [value]
    items = value if isinstance(value, list) else None
    if items is None or not all(isinstance(v, str) for v in items):
        fail(field_path(prefix, key), "expected a string or an array of strings")
    return list(items)


def leftover(body: dict[str, Any], consumed: set[str]) -> dict[str, Any]:
    """Fields with no canonical slot, kept under ``ChatRequest.extra[format]``."""
    return {k: v for k, v in body.items() if k not in consumed}


def merge_extra(body: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, Any]:
    """Add pass-through fields without overriding anything the encoder set itself."""
    for key, value in (extra or {}).items():
        body.setdefault(key, value)
    return body


# --- images -------------------------------------------------------------------------------------

def image_from_url(url: str) -> ImagePart:
    """``data:`` URLs become inline images so every format can carry them."""
    if url.startswith("data:") and ";base64," in url:
        header, _, data = url.partition(";base64,")
        return ImagePart(data=data, media_type=header[5:] or None)
    return ImagePart(url=url)


def image_to_url(image: ImagePart) -> str:
    if image.data is not None:
        return f"data:{image.media_type or 'image/png'};base64,{image.data}"
    return image.url or ""


def guess_media_type(image: ImagePart) -> str:
    if image.media_type:
        return image.media_type
    guessed, _ = mimetypes.guess_type(image.url or "")
    return guessed or "image/jpeg"


# --- files --------------------------------------------------------------------------------------

def file_from_data(value: str, filename: str | None) -> FilePart:
    """OpenAI's ``file_data``: a ``data:`` URL (media type in it) or bare base64 (media type from
    the file name's extension, when it has one)."""
    if value.startswith("data:") and ";base64," in value:
        header, _, data = value.partition(";base64,")
        return FilePart(data=data, media_type=header[5:] or None, filename=filename)
    guessed, _ = mimetypes.guess_type(filename or "")
    return FilePart(data=value, media_type=guessed, filename=filename)


def url_media_type(part: FilePart) -> str | None:
    """The media type of a file given by URL, from its extension (or its file name's), if known."""
    for name in (part.url or "", part.filename or ""):
        guessed, _ = mimetypes.guess_type(name.split("?", 1)[0].split("#", 1)[0])
        if guessed:
            return guessed
    return None


def describe_file(part: FilePart) -> str:
    """How refusals name a file part: its name, id or media type."""
    return part.filename or part.file_id or part.url or part.media_type or "unnamed file"


# --- tool calls ---------------------------------------------------------------------------------

def offered_tools(req: ChatRequest) -> list[Tool]:
    """The tools to declare to a provider without OpenAI's ``allowed_tools``: only the allowed
    ones, which keeps the client's restriction (the model cannot call what it was not given)."""
    choice = req.tool_choice
    if choice is None or choice.allowed is None:
        return req.tools
    allowed = set(choice.allowed)
    return [tool for tool in req.tools if tool.name in allowed]


def dump_args(value: Any) -> str:
    return fastjson.dumps_str(value)


def args_object(call: ToolCallPart) -> dict[str, Any]:
    """Arguments as a JSON object (Anthropic ``input`` and Gemini ``args`` must be objects); a
    freeform call's raw input as ``{"input": text}`` (see :func:`function_form`)."""
    if call.custom:
        return {CUSTOM_INPUT: call.arguments}
    parsed = call.parsed_arguments()
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def call_arguments(call: ToolCallPart) -> str:
    """Arguments as JSON text for a format without freeform tools: a custom call's raw input is
    wrapped as ``{"input": text}``, the one argument of its :func:`function_form`."""
    return dump_args({CUSTOM_INPUT: call.arguments}) if call.custom else call.arguments


# The one string argument a freeform (custom) tool gets in formats that only have functions.
CUSTOM_INPUT = "input"


def function_form(tool: Tool) -> Tool:
    """``tool`` as a plain function tool: itself, or for a freeform tool a function with one
    required string argument ``input``, its grammar appended to the description so the model can
    still follow it."""
    if tool.custom is None:
        return tool
    description = tool.description
    if tool.custom.definition:
        description += (f"\n\nPass the whole input as the string argument `{CUSTOM_INPUT}`. It must follow "
                        f"this {tool.custom.syntax or 'grammar'} grammar:\n{tool.custom.definition}")
    else:
        description += f"\n\nPass the whole input as the string argument `{CUSTOM_INPUT}` (free text)."
    schema = {"type": "object", "properties": {CUSTOM_INPUT: {"type": "string"}}, "required": [CUSTOM_INPUT],
              "additionalProperties": False}
    return Tool(name=tool.name, description=description.strip(), parameters=schema)


def derived_call_id(seed: str, index: int) -> str:
    """A stable id for formats without ids (Gemini): same response -> same id; unique across turns."""
    if not seed:
        return f"call_{uuid.uuid4().hex[:24]}"
    return "call_" + hashlib.sha1(f"{seed}:{index}".encode()).hexdigest()[:24]


def fill_tool_result_names(messages: list[Message]) -> None:
    """Give each ToolResultPart the name of the call it answers (Gemini needs names)."""
    names: dict[str, str] = {}
    for message in messages:
        for part in message.parts:
            if isinstance(part, ToolCallPart):
                names[part.id] = part.name
            elif isinstance(part, ToolResultPart) and part.name is None:
                part.name = names.get(part.tool_call_id)


def has_tool_history(messages: list[Message]) -> bool:
    return any(isinstance(p, (ToolCallPart, ToolResultPart)) for m in messages for p in m.parts)


def tool_history_as_text(messages: list[Message]) -> list[Message]:
    """``messages`` with tool calls and results written as text, for a provider that refuses tool
    history when no tools are declared (Anthropic: "Requests which include tool_use or
    tool_result blocks must define tools"; Codex's compaction request sends ``tools: []`` with
    its whole history). Other parts are kept as they are; ``messages`` is not changed."""
    out: list[Message] = []
    for message in messages:
        parts: list[Any] = []
        for part in message.parts:
            if isinstance(part, ToolCallPart):
                parts.append(TextPart(f"[called tool {part.name} (call {part.id}) with: {part.arguments}]"))
            elif isinstance(part, ToolResultPart):
                text = "".join(p.text for p in part.content if isinstance(p, TextPart))
                parts.append(TextPart(f"[result of call {part.tool_call_id}{' (error)' if part.is_error else ''}: "
                                      f"{text}]"))
            else:
                parts.append(part)
        out.append(Message("user" if message.role == "tool" else message.role, parts))
    return out


def is_base64(value: str) -> bool:
    """Gemini's ``thoughtSignature`` is bytes on the wire; SDKs reject a non-base64 string."""
    try:
        base64.b64decode(value, validate=True)
        return bool(value)
    except (binascii.Error, ValueError):
        try:
            base64.b64decode(value, altchars=b"-_", validate=True)
            return bool(value)
        except (binascii.Error, ValueError):
            return False


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"
