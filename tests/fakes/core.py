"""The fake provider's engine, shared by every wire format: lifecycle, scripting, the record,
and the generation path (auth, decode, pick a behaviour, hand it to :mod:`fakes.answers`).

What differs between formats lives in their own modules (``openai``, ``anthropic``, ``gemini``,
``code_assist``): error shapes, auth failures, codecs, routes; ``fakes.provider`` assembles them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections import deque
from typing import Awaitable, Callable, Iterable
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from router.wire.codec import CodecError
from router.wire.canonical import ChatRequest

from .answers import FORMATS, Answers, Exchange, error_body
from .behaviours import Behaviour, Error, Reply, behaviour_name
from .code_assist import CodeAssistState, OAuthState
from .recording import RECORD, RecordedRequest, json_response

FAMILIES = ("openai", "anthropic", "gemini", "code_assist", "responses")
DEFAULT_KEYS: dict[str, tuple[str, ...]] = {
    "openai": ("sk-fake-openai",),
    "anthropic": ("sk-ant-fake",),
    "gemini": ("fake-gemini-key",),
    "code_assist": ("ya29.fake-access-token",),
    "responses": ("sk-fake-openai",),  # OpenAI's keys serve both of its APIs
}
DEFAULT_MODELS = ("fake-model", "fake-model-large")
_FAIL_MODEL = re.compile(r"^fail-(\d{3})$")


class ProviderCore(Answers):
    """The engine of a local fake of OpenAI, Anthropic, Gemini, Code Assist and Google OAuth, all on one port.

    Attributes tests set or read:

    - ``keys[family]``: accepted credentials (``openai``, ``anthropic``, ``gemini``,
      ``code_assist``); anything else gets that provider's auth error.
    - ``models``: names listed by the ``/models`` endpoints.
    - ``requests``: every :class:`RecordedRequest`, in arrival order.
    - ``code_assist`` (:class:`CodeAssistState`) and ``oauth`` (:class:`OAuthState`).
    - ``validate``: decode request bodies with the project's codecs and 400 on malformed ones.
    - ``gemini_call_ids``: keep ``functionCall.id`` in Gemini replies (the real API omits it).

    Which behaviour a generation request gets: the model's queue (``enqueue(..., model=)``), then
    the model's rule (``on_model``), then the shared queue (``enqueue``), then a model named
    ``fail-<status>`` (an error with that status), then the default echo reply.
    """

    def __init__(self, *, keys: dict[str, Iterable[str]] | None = None, models: Iterable[str] = DEFAULT_MODELS,
                 validate: bool = True) -> None:
        self.keys: dict[str, set[str]] = {f: set(DEFAULT_KEYS[f]) for f in FAMILIES}
        for family, values in (keys or {}).items():
            self.keys[family] = set(values)
        self.models = list(models)
        self.validate = validate
        self.gemini_call_ids = False
        self.requests: list[RecordedRequest] = []
        self.code_assist = CodeAssistState()
        self.oauth = OAuthState()
        self._queue: deque[Behaviour] = deque()
        self._model_queues: dict[str, deque[Behaviour]] = {}
        self._model_rules: dict[str, Behaviour] = {}
        self._counter = itertools.count(1)
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> ProviderCore:
        app = web.Application(middlewares=[self._recording_middleware], client_max_size=64 * 1024 * 1024)
        self._add_routes(app)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        """Stop the server; waits and streams still running end promptly."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ProviderCore:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """What the OpenAI SDK calls ``base_url`` (it appends ``/chat/completions``)."""
        return f"{self.url}/v1"

    @property
    def code_assist_endpoint(self) -> str:
        """Gemini CLI's ``CODE_ASSIST_ENDPOINT`` (it appends ``/v1internal:<method>``)."""
        return self.url

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    def key(self, family: str) -> str:
        """One accepted credential for ``family`` (handy when configuring a backend)."""
        return sorted(self.keys[family])[0]

    # --- scripting ----------------------------------------------------------------------------

    def enqueue(self, *behaviours: Behaviour, model: str | None = None) -> ProviderCore:
        """Queue behaviours for the next generation requests (optionally only for ``model``)."""
        queue = self._queue if model is None else self._model_queues.setdefault(model, deque())
        queue.extend(behaviours)
        return self

    script = enqueue

    def on_model(self, model: str, behaviour: Behaviour | None) -> ProviderCore:
        """Every request for ``model`` gets ``behaviour`` (None removes the rule)."""
        if behaviour is None:
            self._model_rules.pop(model, None)
        else:
            self._model_rules[model] = behaviour
        return self

    def clear(self) -> None:
        """Forget queued behaviours, model rules and recorded requests."""
        self._queue.clear()
        self._model_queues.clear()
        self._model_rules.clear()
        self.requests.clear()

    @property
    def pending(self) -> int:
        """Behaviours still queued (shared and per model): tests can assert all were consumed."""
        return len(self._queue) + sum(len(q) for q in self._model_queues.values())

    def next_behaviour(self, model: str) -> Behaviour:
        queue = self._model_queues.get(model)
        if queue:
            return queue.popleft()
        if model in self._model_rules:
            return self._model_rules[model]
        if self._queue:
            return self._queue.popleft()
        match = _FAIL_MODEL.match(model)
        if match:
            return Error(int(match.group(1)))
        return Reply()

    # --- reading the record -------------------------------------------------------------------

    def calls(self, *, path: str | None = None, family: str | None = None,
              endpoint: str | None = None) -> list[RecordedRequest]:
        """Recorded requests filtered by exact path, family and/or endpoint name."""
        return [r for r in self.requests
                if (path is None or r.path == path) and (family is None or r.family == family)
                and (endpoint is None or r.endpoint == endpoint)]

    @property
    def generations(self) -> list[RecordedRequest]:
        """Recorded generation requests (the ones that consume behaviours)."""
        return [r for r in self.requests if r.endpoint in ("generate", "stream")]

    @property
    def last(self) -> RecordedRequest:
        if not self.requests:
            raise AssertionError("the fake provider has received no request")
        return self.requests[-1]

    async def wait_idle(self, timeout: float = 2.0) -> None:
        """Wait until every request so far has been fully handled."""
        await asyncio.wait_for(asyncio.gather(*(r._done.wait() for r in list(self.requests))), timeout)

    # --- plumbing -----------------------------------------------------------------------------

    def _add_routes(self, app: web.Application) -> None:
        raise NotImplementedError  # the assembly (fakes.provider.FakeProvider) adds each format's routes

    @web.middleware
    async def _recording_middleware(self, request: web.Request,
                                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Record every request before the handler runs; mark it done (with its status) after."""
        raw = await request.read()
        record = RecordedRequest(method=request.method, path=request.path, query=dict(request.query),
                                 headers=CIMultiDictProxy(CIMultiDict(request.headers)), raw=raw)
        if raw:
            content_type = request.headers.get("Content-Type", "")
            if "x-www-form-urlencoded" in content_type:
                record.form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
            else:
                try:
                    record.body = json.loads(raw)
                except ValueError:
                    record.body = None
        self.requests.append(record)
        request[RECORD] = record
        try:
            response = await handler(request)
            if record.status is None and not record.reset:
                record.status = response.status
            return response
        except web.HTTPException as exc:
            record.status = exc.status
            raise
        finally:
            record._done.set()

    # --- auth ---------------------------------------------------------------------------------

    def _auth_error(self, request: web.Request, family: str) -> web.Response | None:
        """None when the credential is accepted, else the provider's own auth failure."""
        record: RecordedRequest = request[RECORD]
        record.family = family
        key = record.api_key
        if key in self.keys[family]:
            return None
        return FORMATS[family].auth_error(key)

    async def _generate(self, request: web.Request, family: str, model: str, stream: bool, *,
                        sse: bool = True, include_usage: bool = True,
                        denied: web.Response | None = None) -> web.StreamResponse:
        """Common path: auth, body check, pick a behaviour, perform it."""
        record: RecordedRequest = request[RECORD]
        record.family, record.model, record.stream = family, model or None, stream
        record.endpoint = "stream" if stream else "generate"
        if denied is None:
            denied = self._auth_error(request, family)
        if denied is not None:
            return denied
        chat, invalid = self._decode(record, family, model, stream)
        if invalid is not None:
            return invalid
        ex = Exchange(request, record, family, model, stream, chat, sse=sse, include_usage=include_usage)
        behaviour = self.next_behaviour(model)
        record.behaviour = behaviour_name(behaviour)
        return await self._perform(ex, behaviour)

    def _decode(self, record: RecordedRequest, family: str, model: str,
                stream: bool) -> tuple[ChatRequest | None, web.Response | None]:
        """Parse the body with the project's codec; a malformed one is the provider's 400."""
        if record.body is None:
            return None, json_response(error_body(family, 400, "Invalid JSON payload received."), 400)
        if not self.validate:
            return None, None
        try:
            return FORMATS[family].decode(record.body, model, stream), None
        except CodecError as err:
            return None, json_response(error_body(family, 400, err.message, model), 400)
