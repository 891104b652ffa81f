"""Golden files: each ``cases/*.json`` holds an input in one format, the canonical value it decodes
to, and its encoding in every format (decode in X, encode in Y for all X, Y). A request a format
cannot carry faithfully is encoded as ``{"refused": message}``, the message the client gets.

Run with ``UPDATE_GOLDENS=1`` to rewrite the ``expected`` sections after an intended change, then
review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from router.errors import ProxyError
from router.wire.codec import CodecError
from wire_support import FORMATS, decode_stream, encode_stream, frames, sse_items, to_json

CASES = sorted((Path(__file__).parent / "cases").glob("*.json"))
UPDATE = os.environ.get("UPDATE_GOLDENS") == "1"


def _path_args(fmt: str, case_path: dict[str, Any] | None, encoded_from: Any = None) -> dict[str, Any]:
    if case_path:
        return dict(case_path)
    if fmt == "gemini":  # model and stream live in the URL for Gemini
        return {"model": getattr(encoded_from, "model", None) or "gemini-test",
                "stream": getattr(encoded_from, "stream", False)}
    return {}


def _run_request(case: dict[str, Any]) -> dict[str, Any]:
    module = FORMATS[case["format"]]
    req = module.decode_request(case["input"], **_path_args(case["format"], case.get("path")))
    encoded: dict[str, Any] = {}
    for name, fmt in FORMATS.items():
        try:
            encoded[name] = fmt.encode_request(req)
        except CodecError as err:  # no faithful translation: the refusal (a 400 naming the backend) is golden too
            encoded[name] = {"refused": err.message}
            continue
        FORMATS[name].decode_request(encoded[name], **_path_args(name, None, req))  # passes our own decoder
    return {"canonical": to_json(req), "encoded": encoded}


def _run_response(case: dict[str, Any]) -> dict[str, Any]:
    resp = FORMATS[case["format"]].decode_response(case["input"])
    encoded = {name: fmt.encode_response(resp) for name, fmt in FORMATS.items()}
    for name, body in encoded.items():
        FORMATS[name].decode_response(body)
    return {"canonical": to_json(resp), "encoded": encoded}


def _run_stream(case: dict[str, Any]) -> dict[str, Any]:
    events = decode_stream(case["format"], case["input"])
    encoded = {}
    for name in FORMATS:
        payload = encode_stream(name, events)
        decode_stream(name, sse_items(payload))
        encoded[name] = frames(payload)
    return {"canonical": to_json(events), "encoded": encoded}


def _run_request_errors(case: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for item in case["input"]:
        with pytest.raises(CodecError) as info:  # the HTTP edge makes it a 400 invalid_request
            FORMATS[case["format"]].decode_request(item["body"], **item.get("path", {}))
        err = info.value
        assert err.param and err.message.startswith(err.param + ":"), "the message names the field"
        out.append({"param": err.param, "message": err.message})
    return out


def _run_errors(case: dict[str, Any]) -> dict[str, Any]:
    errors = [ProxyError(e["status"], e["message"], e["kind"], e.get("param")) for e in case["input"]]
    return {name: [fmt.encode_error(e) for e in errors] for name, fmt in FORMATS.items()}


RUNNERS = {"request": _run_request, "response": _run_response, "stream": _run_stream,
           "request_errors": _run_request_errors, "errors": _run_errors}


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: Path) -> None:
    case = json.loads(path.read_text())
    actual = json.loads(json.dumps(RUNNERS[case["kind"]](case)))  # tuples -> lists etc.
    if UPDATE:
        case["expected"] = actual
        path.write_text(json.dumps(case, indent=2, ensure_ascii=False) + "\n")
        return
    assert case.get("expected"), f"{path.name} has no expected section; run with UPDATE_GOLDENS=1"
    if case["kind"] in ("request", "response", "stream"):
        assert actual["canonical"] == case["expected"]["canonical"], "canonical value changed"
        for name in FORMATS:
            assert actual["encoded"][name] == case["expected"]["encoded"][name], f"{name} encoding changed"
    assert actual == case["expected"]


def test_every_pair_is_covered() -> None:
    kinds = {(json.loads(p.read_text())["kind"], json.loads(p.read_text()).get("format")) for p in CASES}
    for kind in ("request", "response", "stream", "request_errors"):
        for fmt in FORMATS:
            assert (kind, fmt) in kinds, f"no golden {kind} case decoded from {fmt}"
