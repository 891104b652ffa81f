"""Gemini ``generateContent`` / ``streamGenerateContent?alt=sse``, both directions.

The model and streaming come from the URL (``/models/{model}:streamGenerateContent``), so
``decode_request`` takes them as arguments and ``encode_request`` leaves them out of the body.

Choices where Gemini cannot express something canonical (or the other way round):

- **Tool-call ids**: Gemini may omit ``functionCall.id``. Request decode numbers calls ``call_<n>``
  through the conversation and pairs each ``functionResponse`` without an id with the oldest
  unanswered call of the same name; reply decode derives ids from ``responseId`` + call index (stable
  for a reply, unique across turns). Replies we encode carry the id; requests to a Gemini backend
  do not (results are matched by name there).
- **Tool results** are ``functionResponse.response = {"output": text}`` (``{"error": text}`` when
  ``is_error``), the shape Gemini CLI uses; other response objects decode as their JSON text.
  Result text that is a JSON object is sent as the response object itself (and decodes back to
  that JSON text). Images in a tool result go in ``inlineData`` parts after the function responses.
- **Thought signatures** (``thoughtSignature``, base64 bytes) sit on the part *after* the thoughts
  (often the ``functionCall``). A signature that is not base64 (from another provider) is dropped,
  since Gemini and its SDKs reject it. Decoding gives them to the preceding ``ThinkingPart`` (or an empty one);
  encoding puts a thinking part's signature on the next part of the turn. Thought *text* is not sent
  back to a Gemini backend (only the signature matters there).
- **Finish reasons**: Gemini has no tool-call reason, so ``STOP`` with function calls decodes as
  ``tool_calls`` and ``tool_calls``/``loop`` (the proxy cut a repeated-output loop) encode as
  ``STOP``; safety-type reasons are ``content_filter`` (encoded ``SAFETY``);
  ``MALFORMED_FUNCTION_CALL``/``OTHER`` are ``error`` (encoded ``OTHER``).
- **Tokens**: ``promptTokenCount`` includes ``cachedContentTokenCount`` (as canonical does);
  ``thoughtsTokenCount`` is added to completion tokens. There is no ``created`` time.
- Tool schemas are sent as ``parametersJsonSchema`` (full JSON Schema); ``parameters`` (OpenAPI
  subset, upper-case types) is accepted on decode and normalised to lower-case JSON Schema types.
- A thinking budget from another format is capped at 24576 (Gemini 2.5 Flash's maximum).
- Non-function tools (``googleSearch``...), ``safetySettings``, unknown ``generationConfig`` keys
  and a ``thinkingConfig`` we cannot reproduce exactly are kept in ``extra["gemini"]``.
- Only camelCase field names are read (what the REST API and Gemini CLI send), plus
  ``parameters_json_schema``, which the google-genai Python SDK sends in snake_case.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from typing import Any

from router.wire.canonical import (
    ChatRequest, ChatResponse, FilePart, FinishReason, ImagePart, Message, Part, StreamEnd, StreamError,
    StreamEvent, StreamStart, TextDelta, TextPart, ThinkingDelta, ThinkingPart, Tool, ToolCallDelta,
    ToolCallPart, ToolCallStart, ToolChoice, ToolResultPart, Usage,
)
from router.wire.codec import CodecError, ErrorReport, WireError
from router.wire import sse
from router.wire.common import (
    check_model, nonempty_list,
    args_object, derived_call_id, describe_file, dump_args, expect_object, fail, fill_tool_result_names,
    function_form, get_bool, get_int, get_list, get_num, get_obj, get_str, guess_media_type, is_base64,
    leftover, lenient_int, new_id, offered_tools, one_of, str_list, url_media_type,
)

FORMAT = "gemini"
_MAX_THINKING = 24576  # the largest budget every Gemini 2.5 model accepts (Flash's limit)
_PART_KINDS = ("text", "inlineData", "fileData", "functionCall", "functionResponse")
_CONSUMED = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig"}
_GEN_CONSUMED = {"temperature", "topP", "maxOutputTokens", "stopSequences", "thinkingConfig"}
_FINISH_IN: dict[str, FinishReason] = {
    "STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
    "LANGUAGE": "content_filter", "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter", "IMAGE_SAFETY": "content_filter", "MALFORMED_FUNCTION_CALL": "error",
    "UNEXPECTED_TOOL_CALL": "error", "OTHER": "error",
}
_FINISH_OUT = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY",
               "error": "OTHER", "loop": "STOP"}
_ERROR_OUT = {
    "invalid_request": "INVALID_ARGUMENT", "authentication": "UNAUTHENTICATED",
    "permission": "PERMISSION_DENIED", "not_found": "NOT_FOUND", "rate_limit": "RESOURCE_EXHAUSTED",
    "overloaded": "UNAVAILABLE", "timeout": "DEADLINE_EXCEEDED", "request_too_large": "INVALID_ARGUMENT",
    "api_error": "INTERNAL",
}
_ERROR_IN = {v: k for k, v in _ERROR_OUT.items() if k != "request_too_large"}


# --- parts --------------------------------------------------------------------------------------

class _Ids:
    """Tool-call ids for one conversation or reply (Gemini may not send any)."""

    def __init__(self, seed: str | None = None) -> None:
        self.seed = seed  # None: request numbering; str: reply derived from responseId
        self.count = 0
        self.open: dict[str, deque[str]] = defaultdict(deque)

    def call(self, call: dict[str, Any]) -> str:
        given = call.get("id")
        index, self.count = self.count, self.count + 1
        cid = given if isinstance(given, str) and given else (
            f"call_{index}" if self.seed is None else derived_call_id(self.seed, index))
        self.open[str(call.get("name"))].append(cid)
        return cid

    def result(self, response: dict[str, Any]) -> str:
        given, pending = response.get("id"), self.open[str(response.get("name"))]
        if isinstance(given, str) and given:
            if given in pending:
                pending.remove(given)
            return given
        if pending:
            return pending.popleft()
        self.count += 1
        return f"call_{self.count - 1}"


def _decode_result(fr: dict[str, Any], p: str, ids: _Ids) -> ToolResultPart:
    name = get_str(fr, "name", p, required=True) or ""
    response = get_obj(fr, "response", p) or {}
    content: list[TextPart | ImagePart] = []
    is_error = False
    if set(response) == {"output"} and isinstance(response["output"], str):
        content.append(TextPart(response["output"]))
    elif set(response) == {"error"} and isinstance(response["error"], str):
        content.append(TextPart(response["error"]))
        is_error = True
    elif response:
        content.append(TextPart(dump_args(response)))
    for k, inner in enumerate(get_list(fr, "parts", p)):
        image = expect_object(inner, f"{p}.parts[{k}]").get("inlineData")
        if isinstance(image, dict):
            content.append(ImagePart(data=str(image.get("data") or ""), media_type=str(image.get("mimeType") or "")))
    return ToolResultPart(ids.result(fr), content, name=name, is_error=is_error)


def _decode_part(raw: Any, p: str, role: str, ids: _Ids, strict: bool) -> tuple[str | None, Part | None]:
    """One part -> (thought signature or None, canonical part or None)."""
    raw = expect_object(raw, p)
    sig = get_str(raw, "thoughtSignature", p)
    kinds = [k for k in _PART_KINDS if k in raw]
    if not kinds:
        if strict and sig is None:
            fail(p, f"expected a part with one of {', '.join(_PART_KINDS)}")
        return sig, None
    kind = kinds[0]
    if kind == "text":
        text = get_str(raw, "text", p, required=True) or ""
        if get_bool(raw, "thought", p):
            return None, ThinkingPart(text, sig)
        return sig, TextPart(text)
    if kind == "inlineData":
        data = get_obj(raw, "inlineData", p, required=True) or {}
        return sig, ImagePart(data=get_str(data, "data", f"{p}.inlineData", required=True),
                              media_type=get_str(data, "mimeType", f"{p}.inlineData", required=True))
    if kind == "fileData":
        data = get_obj(raw, "fileData", p, required=True) or {}
        return sig, ImagePart(url=get_str(data, "fileUri", f"{p}.fileData", required=True),
                              media_type=get_str(data, "mimeType", f"{p}.fileData"))
    if kind == "functionCall":
        if role != "model":
            fail(f"{p}.functionCall", "only allowed in a model turn")
        call = get_obj(raw, "functionCall", p, required=True) or {}
        name = get_str(call, "name", f"{p}.functionCall", required=True) or ""
        args = get_obj(call, "args", f"{p}.functionCall") or {}
        return sig, ToolCallPart(ids.call(call), name, dump_args(args))
    if role == "model":
        fail(f"{p}.functionResponse", "only allowed in a user turn")
    return sig, _decode_result(get_obj(raw, "functionResponse", p, required=True) or {}, f"{p}.functionResponse", ids)


def _decode_parts(raw_parts: list[Any], param: str, role: str, ids: _Ids, strict: bool = True) -> list[Part]:
    out: list[Part] = []
    for j, raw in enumerate(raw_parts):
        sig, part = _decode_part(raw, f"{param}[{j}]", role, ids, strict)
        if sig is not None:
            last = out[-1] if out else None
            if isinstance(last, ThinkingPart) and last.signature is None:
                last.signature = sig
            else:
                out.append(ThinkingPart("", sig))
        if part is not None and not (isinstance(part, TextPart) and not part.text and not strict):
            out.append(part)
    return out


def _encode_image(image: ImagePart) -> dict[str, Any]:
    if image.data is not None:
        return {"inlineData": {"mimeType": image.media_type or "image/png", "data": image.data}}
    return {"fileData": {"mimeType": guess_media_type(image), "fileUri": image.url or ""}}


def _encode_file(part: FilePart) -> dict[str, Any]:
    """Gemini reads documents and audio inline (``inlineData``) by media type, and files by URL
    (``fileData``, its media type guessed from the URL or file name when known)."""
    if part.url and part.data is None:
        media_type = part.media_type or url_media_type(part)
        return {"fileData": {"mimeType": media_type, "fileUri": part.url} if media_type else {"fileUri": part.url}}
    if part.data is None or not part.media_type:
        fail("messages", f"file {describe_file(part)!r} cannot be sent to Gemini: "
             + ("a provider file id is OpenAI's" if part.file_id else "its media type is unknown"))
    return {"inlineData": {"mimeType": part.media_type, "data": part.data}}


def _result_object(part: ToolResultPart) -> dict[str, Any]:
    """``{"output": text}`` / ``{"error": text}``; text that is a JSON object is sent as that object."""
    text = "\n".join(p.text for p in part.content if isinstance(p, TextPart))
    if not part.is_error and text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
    return {"error" if part.is_error else "output": text}


def _encode_parts(parts: list[Part], names: dict[str, str], reply: bool) -> list[dict[str, Any]]:
    """Canonical parts of one turn -> Gemini parts; signatures move to the part after the thoughts."""
    out: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    pending: str | None = None

    def add(part: dict[str, Any]) -> None:
        nonlocal pending
        if pending is not None:
            part["thoughtSignature"], pending = pending, None
        out.append(part)

    for part in parts:
        if isinstance(part, ThinkingPart):
            if reply and part.text:
                out.append({"text": part.text, "thought": True})
            if part.signature and is_base64(part.signature):
                pending = part.signature
        elif isinstance(part, TextPart):
            add({"text": part.text})
        elif isinstance(part, ImagePart):
            add(_encode_image(part))
        elif isinstance(part, FilePart):
            add(_encode_file(part))
        elif isinstance(part, ToolCallPart):
            call: dict[str, Any] = {"name": part.name, "args": args_object(part)}
            if reply:
                call = {"id": part.id, **call}
            add({"functionCall": call})
        elif isinstance(part, ToolResultPart):
            name = part.name or names.get(part.tool_call_id) or part.tool_call_id
            add({"functionResponse": {"name": name, "response": _result_object(part)}})
            images.extend(_encode_image(p) for p in part.content if isinstance(p, ImagePart))
    if pending is not None and out and out[-1].get("thought"):
        out[-1]["thoughtSignature"] = pending  # nothing followed the thoughts: keep it with them
    return out + images


# --- requests -----------------------------------------------------------------------------------

def decode_request(body: Any, *, model: str | None = None, stream: bool | None = None) -> ChatRequest:
    """Client body + model/stream from the URL path -> ChatRequest; a malformed field is a CodecError."""
    body = expect_object(body, "body")
    if not model:
        fail("model", "required (Gemini takes it from the URL path /models/{model}:generateContent)")
    check_model(model)
    raw_contents = nonempty_list(body, "contents", "content")
    ids = _Ids()
    messages: list[Message] = []
    for i, raw in enumerate(raw_contents):
        messages.extend(_decode_content(raw, f"contents[{i}]", ids))
    fill_tool_result_names(messages)
    extra = leftover(body, _CONSUMED)
    req = ChatRequest(model=model, messages=messages, system=_decode_system(body), stream=bool(stream),
                      extra={FORMAT: extra})
    req.tools = _decode_tools(get_list(body, "tools"), extra)
    req.tool_choice = _decode_tool_config(get_obj(body, "toolConfig"), extra)
    _decode_generation(get_obj(body, "generationConfig"), req, extra)
    return req


def _decode_content(raw: Any, p: str, ids: _Ids) -> list[Message]:
    raw = expect_object(raw, p)
    role = one_of(get_str(raw, "role", p), ("user", "model", "function"), f"{p}.role") or "user"
    parts = _decode_parts(get_list(raw, "parts", p, required=True), f"{p}.parts", role, ids)
    if role == "model":
        return [Message("assistant", parts)]
    out: list[Message] = []
    for part in parts:
        part_role = "tool" if isinstance(part, ToolResultPart) else "user"
        if out and out[-1].role == part_role:
            out[-1].parts.append(part)
        else:
            out.append(Message(part_role, [part]))
    return out or [Message("user", [])]


def _decode_system(body: dict[str, Any]) -> list[TextPart]:
    system = get_obj(body, "systemInstruction")
    if system is None:
        return []
    parts = _decode_parts(get_list(system, "parts", "systemInstruction", required=True),
                          "systemInstruction.parts", "user", _Ids())
    for j, part in enumerate(parts):
        if not isinstance(part, TextPart):
            fail(f"systemInstruction.parts[{j}]", "expected a text part")
    return [p for p in parts if isinstance(p, TextPart)]


def _lower_types(schema: Any) -> Any:
    """OpenAPI-style ``"type": "OBJECT"`` -> JSON Schema ``"object"``, recursively."""
    if isinstance(schema, list):
        return [_lower_types(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    return {k: (v.lower() if k == "type" and isinstance(v, str) else _lower_types(v)) for k, v in schema.items()}


def _decode_tools(raw_tools: list[Any], extra: dict[str, Any]) -> list[Tool]:
    tools: list[Tool] = []
    for i, entry in enumerate(raw_tools):
        p = f"tools[{i}]"
        entry = expect_object(entry, p)
        others = {k: v for k, v in entry.items() if k != "functionDeclarations"}
        if others:
            extra.setdefault("tools", []).append(others)  # googleSearch, codeExecution, ...
        for j, decl in enumerate(get_list(entry, "functionDeclarations", p)):
            dp = f"{p}.functionDeclarations[{j}]"
            decl = expect_object(decl, dp)
            name = get_str(decl, "name", dp, required=True)
            if not name:
                fail(f"{dp}.name", "must not be empty")
            # google-genai (Python) sends this one field in snake_case; proto JSON accepts both.
            schema = get_obj(decl, "parametersJsonSchema", dp) or get_obj(decl, "parameters_json_schema", dp)
            if schema is None:
                schema = _lower_types(get_obj(decl, "parameters", dp))
            tools.append(Tool(name, get_str(decl, "description", dp) or "", schema))
    return tools


def _decode_tool_config(config: dict[str, Any] | None, extra: dict[str, Any]) -> ToolChoice | None:
    if config is None:
        return None
    rest = {k: v for k, v in config.items() if k != "functionCallingConfig"}
    if rest:
        extra["toolConfig"] = rest
    fcc = get_obj(config, "functionCallingConfig", "toolConfig")
    if fcc is None:
        return None
    p = "toolConfig.functionCallingConfig"
    mode = one_of(get_str(fcc, "mode", p), ("MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"), f"{p}.mode")
    names = get_list(fcc, "allowedFunctionNames", p)
    if mode == "ANY":
        only = names[0] if len(names) == 1 and isinstance(names[0], str) else None
        return ToolChoice("required", only)
    return ToolChoice("none" if mode == "NONE" else "auto")


def _decode_generation(config: dict[str, Any] | None, req: ChatRequest, extra: dict[str, Any]) -> None:
    if config is None:
        return
    p = "generationConfig"
    req.temperature = get_num(config, "temperature", p)
    req.top_p = get_num(config, "topP", p)
    req.max_tokens = get_int(config, "maxOutputTokens", p, minimum=1)
    req.stop = str_list(config, "stopSequences", p)
    rest = leftover(config, _GEN_CONSUMED)
    thinking = get_obj(config, "thinkingConfig", p)
    if thinking is not None:
        budget = get_int(thinking, "thinkingBudget", f"{p}.thinkingConfig")
        req.thinking_budget = budget if budget and budget > 0 else None
        if thinking != {"includeThoughts": True, "thinkingBudget": budget} or req.thinking_budget is None:
            rest["thinkingConfig"] = thinking  # dynamic (-1), off (0), hidden, thinkingLevel: keep as sent
    if rest:
        extra["generationConfig"] = rest


def encode_request(req: ChatRequest) -> dict[str, Any]:
    """ChatRequest -> Gemini body (model and ``stream`` go in the URL, not here)."""
    extra = dict(req.extra.get(FORMAT, {}))
    names = {p.id: p.name for m in req.messages for p in m.parts if isinstance(p, ToolCallPart)}
    contents: list[dict[str, Any]] = []
    for message in req.messages:
        role = "model" if message.role == "assistant" else "user"
        parts = _encode_parts(message.parts, names, reply=False)
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    body: dict[str, Any] = {"contents": contents}
    if req.system:
        body["systemInstruction"] = {"parts": [{"text": p.text} for p in req.system]}
    offered = offered_tools(req)
    tools = [{"functionDeclarations": [_encode_tool(t) for t in offered]}] if offered else []
    tools += list(extra.pop("tools", []))
    if tools:
        body["tools"] = tools
    tool_config = dict(extra.pop("toolConfig", {}))
    if req.tool_choice is not None:
        tool_config["functionCallingConfig"] = _encode_tool_choice(req.tool_choice)
    if tool_config:
        body["toolConfig"] = tool_config
    generation = _encode_generation(req, dict(extra.pop("generationConfig", {})))
    if generation:
        body["generationConfig"] = generation
    for key, value in extra.items():
        body.setdefault(key, value)
    return body


def _encode_tool(tool: Tool) -> dict[str, Any]:
    tool = function_form(tool)
    decl: dict[str, Any] = {"name": tool.name}
    if tool.description:
        decl["description"] = tool.description
    if tool.parameters is not None:
        decl["parametersJsonSchema"] = {k: v for k, v in tool.parameters.items() if k != "$schema"}
    return decl


def _encode_tool_choice(choice: ToolChoice) -> dict[str, Any]:
    if choice.mode == "none":
        return {"mode": "NONE"}
    if choice.mode == "required" or choice.name:
        return {"mode": "ANY", **({"allowedFunctionNames": [choice.name]} if choice.name else {})}
    return {"mode": "AUTO"}


def _encode_generation(req: ChatRequest, rest: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if req.temperature is not None:
        config["temperature"] = req.temperature
    if req.top_p is not None:
        config["topP"] = req.top_p
    if req.max_tokens is not None:
        config["maxOutputTokens"] = req.max_tokens
    if req.stop:
        config["stopSequences"] = list(req.stop)
    if req.thinking_budget and "thinkingConfig" not in rest:
        budget = min(req.thinking_budget, _MAX_THINKING)
        config["thinkingConfig"] = {"includeThoughts": True, "thinkingBudget": budget}
    for key, value in rest.items():
        config.setdefault(key, value)
    return config


# --- responses ----------------------------------------------------------------------------------

def decode_usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    completion = lenient_int(raw.get("candidatesTokenCount")) + lenient_int(raw.get("thoughtsTokenCount"))
    return Usage(prompt_tokens=lenient_int(raw.get("promptTokenCount")), completion_tokens=completion,
                 cached_tokens=lenient_int(raw.get("cachedContentTokenCount")))


def encode_usage(usage: Usage) -> dict[str, Any]:
    out = {"promptTokenCount": usage.prompt_tokens, "candidatesTokenCount": usage.completion_tokens,
           "totalTokenCount": usage.total_tokens}
    if usage.cached_tokens:
        out["cachedContentTokenCount"] = usage.cached_tokens
    return out


def _finish(raw: Any, has_calls: bool) -> FinishReason:
    finish = _FINISH_IN.get(str(raw), "stop")
    return "tool_calls" if finish == "stop" and has_calls else finish


def decode_response(body: Any) -> ChatResponse:
    """Backend reply -> ChatResponse (a malformed body is a CodecError; the connector makes it a 502)."""
    try:
        body = expect_object(body, "body")
        rid = get_str(body, "responseId") or new_id("gen-")
        candidates = get_list(body, "candidates")
        candidate = expect_object(candidates[0], "candidates[0]") if candidates else {}
        content = get_obj(candidate, "content", "candidates[0]") or {}
        parts = _decode_parts(get_list(content, "parts", "candidates[0].content"),
                              "candidates[0].content.parts", "model", _Ids(rid), strict=False)
        has_calls = any(isinstance(p, ToolCallPart) for p in parts)
        finish = _finish(candidate.get("finishReason"), has_calls)
        feedback = body.get("promptFeedback")
        if not candidates and isinstance(feedback, dict) and feedback.get("blockReason"):
            finish = "content_filter"
        return ChatResponse(id=rid, model=get_str(body, "modelVersion") or "", parts=parts,
                            finish_reason=finish, usage=decode_usage(body.get("usageMetadata")) or Usage())
    except CodecError as err:
        raise CodecError(err.param, f"backend returned a malformed Gemini response: {err.message}") from None


def _reply(parts: list[dict[str, Any]], resp_id: str, model: str, finish: str | None = None,
           usage: Usage | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {}
    if parts or finish is None:
        candidate["content"] = {"role": "model", "parts": parts}
    if finish is not None:
        candidate["finishReason"] = finish
    candidate["index"] = 0
    out: dict[str, Any] = {"candidates": [candidate]}
    if usage is not None:
        out["usageMetadata"] = encode_usage(usage)
    out["modelVersion"] = model
    out["responseId"] = resp_id
    return out


def encode_response(resp: ChatResponse) -> dict[str, Any]:
    parts = _encode_parts(resp.parts, {}, reply=True)
    return _reply(parts, resp.id, resp.model, _FINISH_OUT[resp.finish_reason], resp.usage)


def encode_error(err: ErrorReport) -> dict[str, Any]:
    return {"error": {"code": err.status, "message": err.message, "status": _ERROR_OUT.get(err.kind, "INTERNAL")}}


# --- streams ------------------------------------------------------------------------------------

def encoder_options(body: Any) -> dict[str, Any]:
    """Keyword arguments for :class:`StreamEncoder` from the request body: none in this format
    (the HTTP edge asks every codec, see ``openai.encoder_options``)."""
    return {}


class StreamEncoder:
    """Canonical events -> ``data: <GenerateContentResponse>`` frames.

    A function call is sent whole once its arguments are complete (next call, text, or end).
    """

    def __init__(self) -> None:
        self._id, self._model = "", ""
        self._pending_sig: str | None = None
        self._tool: ToolCallPart | None = None
        self._tool_index = -1

    def _part(self, part: dict[str, Any]) -> dict[str, Any]:
        if self._pending_sig is not None:
            part["thoughtSignature"], self._pending_sig = self._pending_sig, None
        return part

    def _flush_tool(self) -> list[dict[str, Any]]:
        if self._tool is None:
            return []
        call, self._tool = self._tool, None
        return [self._part({"functionCall": {"id": call.id, "name": call.name, "args": args_object(call)}})]

    def _frame(self, parts: list[dict[str, Any]], finish: str | None = None, usage: Usage | None = None) -> bytes:
        if not parts and finish is None:
            return b""
        return sse.frame(_reply(parts, self._id, self._model, finish, usage))

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, StreamStart):
            self._id, self._model = event.id or new_id("gen-"), event.model
            return b""
        if isinstance(event, TextDelta):
            parts = self._flush_tool()
            return self._frame(parts + [self._part({"text": event.text})] if event.text else parts)
        if isinstance(event, ThinkingDelta):
            parts = self._flush_tool()
            if event.text:
                parts.append({"text": event.text, "thought": True})
            if event.signature and is_base64(event.signature):
                self._pending_sig = event.signature
            return self._frame(parts)
        if isinstance(event, ToolCallStart):
            parts = self._flush_tool()
            self._tool, self._tool_index = ToolCallPart(event.id, event.name, "", event.custom), event.index
            return self._frame(parts)
        if isinstance(event, ToolCallDelta):
            if self._tool is not None and event.index == self._tool_index:
                self._tool.arguments += event.arguments
            return b""  # a late fragment for a call already sent cannot be added to it
        if isinstance(event, StreamEnd):
            parts = self._flush_tool()
            if self._pending_sig is not None:
                parts.append(self._part({"text": ""}))
            return self._frame(parts, _FINISH_OUT[event.finish_reason], event.usage or Usage())
        if isinstance(event, StreamError):
            return sse.frame(encode_error(WireError(500, event.message, event.kind)))
        return b""


class StreamDecoder:
    """Streamed GenerateContentResponse objects -> canonical events."""

    def __init__(self) -> None:
        self._started = self._ended = False
        self._ids: _Ids | None = None
        self._tools = 0
        self._usage: Usage | None = None

    def feed(self, data: Any) -> list[StreamEvent]:
        if self._ended or not isinstance(data, dict):
            return []
        if isinstance(data.get("error"), dict):
            self._ended = True
            error = data["error"]
            return [StreamError(str(error.get("message") or "backend error"),
                                _ERROR_IN.get(str(error.get("status")), "api_error"))]
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            rid = data.get("responseId") if isinstance(data.get("responseId"), str) else new_id("gen-")
            self._ids = _Ids(rid)
            usage = decode_usage(data.get("usageMetadata"))
            start_usage = Usage(usage.prompt_tokens, 0, usage.cached_tokens) if usage else None
            events.append(StreamStart(id=rid, model=str(data.get("modelVersion") or ""), usage=start_usage))
        self._usage = decode_usage(data.get("usageMetadata")) or self._usage
        candidates = data.get("candidates")
        candidate = candidates[0] if isinstance(candidates, list) and candidates else {}
        candidate = candidate if isinstance(candidate, dict) else {}
        content = candidate.get("content") if isinstance(candidate.get("content"), dict) else {}
        parts = content.get("parts") if isinstance(content.get("parts"), list) else []
        for raw in parts:
            events.extend(self._part(raw))
        feedback = data.get("promptFeedback")
        if candidate.get("finishReason"):
            events.append(self._end(_finish(candidate["finishReason"], self._tools > 0)))
        elif not candidates and isinstance(feedback, dict) and feedback.get("blockReason"):
            events.append(self._end("content_filter"))
        return events

    def _part(self, raw: Any) -> list[StreamEvent]:
        if not isinstance(raw, dict):
            return []
        sig = raw.get("thoughtSignature") if isinstance(raw.get("thoughtSignature"), str) else None
        text = raw.get("text") if isinstance(raw.get("text"), str) else ""
        if raw.get("thought") is True:
            return [ThinkingDelta(text, sig)] if text or sig else []
        events: list[StreamEvent] = [ThinkingDelta("", sig)] if sig else []
        if text:
            events.append(TextDelta(text))
        call = raw.get("functionCall")
        if isinstance(call, dict) and self._ids is not None:
            index, self._tools = self._tools, self._tools + 1
            args = call.get("args") if isinstance(call.get("args"), dict) else {}
            events.append(ToolCallStart(index, self._ids.call(call), str(call.get("name") or "")))
            events.append(ToolCallDelta(index, dump_args(args)))
        return events

    def _end(self, finish: FinishReason) -> StreamEnd:
        self._ended = True
        return StreamEnd(finish, self._usage)

    def finish(self) -> list[StreamEvent]:
        """End of body: Gemini has no end event, so a stream without ``finishReason`` ends as stop."""
        if self._ended:
            return []
        events: list[StreamEvent] = [] if self._started else [StreamStart(id="", model="")]
        return events + [self._end("tool_calls" if self._tools else "stop")]
