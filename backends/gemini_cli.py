"""Gemini through Google's Code Assist API with Gemini CLI's OAuth login.

Two backends share this connector:

- ``gemini-cli-oauth-personal``: the free tier; the Google-managed project comes from
  ``v1internal:loadCodeAssist``, or from ``onboardUser`` the first time.
- ``gemini-cli-cloud-project``: the user's own GCP project (``gcp_project_id`` / ``GCP_PROJECT_ID``),
  billed to it; it must be on the standard or enterprise tier, and we say clearly when it is not.

Requests are Gemini ``GenerateContentRequest`` bodies wrapped as ``{"model", "project",
"user_prompt_id", "request"}``; replies come back wrapped in ``{"response": ...}``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, AsyncIterator, Mapping

import aiohttp

from router.wire import gemini
from router.wire.canonical import ChatRequest, ChatResponse, StreamEvent

from .base import BackendError, Health
from .http import HttpBackend, without_api_version
from .keys import Key, KeyChoice
from .oauth import DEFAULT_TOKEN_URL, GEMINI_CLI_CLIENT_ID, GEMINI_CLI_CLIENT_SECRET, OAuthCredentials, credentials_file
from .settings import ConnectorSettings


def _inner(reply: Any) -> Any:
    """The Gemini reply (or stream frame) inside Code Assist's ``{"response": ...}`` envelope."""
    return reply.get("response", reply) if isinstance(reply, dict) else reply


DEFAULT_MODELS = ("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite")
PAID_TIERS = ("standard-tier", "enterprise-tier", "legacy-tier")
ONBOARD_POLL_SECONDS = 2.0
ONBOARD_MAX_POLLS = 15
_METADATA = {"ideType": "IDE_UNSPECIFIED", "platform": "PLATFORM_UNSPECIFIED", "pluginType": "GEMINI"}


class CodeAssistBackend(HttpBackend):
    default_base_url = "https://cloudcode-pa.googleapis.com"
    api_version = "v1internal"
    codec = gemini  # Gemini bodies, wrapped (see the module docstring)

    def __init__(self, settings: ConnectorSettings, *, cloud_project: bool) -> None:
        super().__init__(settings)
        opts: Mapping[str, Any] = settings.options
        self.cloud_project = cloud_project
        self.gcp_project: str | None = opts.get("gcp_project_id") if cloud_project else None
        self.creds = OAuthCredentials(
            credentials_file(opts.get("credentials_path")), str(opts.get("token_url") or DEFAULT_TOKEN_URL),
            str(opts.get("client_id") or GEMINI_CLI_CLIENT_ID), str(opts.get("client_secret") or GEMINI_CLI_CLIENT_SECRET),
            backend=settings.name,
        )
        self._project: str | None = None
        self._project_lock = asyncio.Lock()
        self._token = ""

    headers_follow_key = False  # the OAuth token is refreshed behind the key's back

    @classmethod
    def fit_base_url(cls, url: str) -> str:
        """The connector adds ``/v1internal:...`` itself: a base URL ending in it loses it."""
        return without_api_version(url, "/v1internal")

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def secrets(self) -> list[str]:
        return [self._token, *self.settings.secrets] if self._token else list(self.settings.secrets)

    def _url(self, method: str) -> str:
        return f"{self.base_url}/{self.api_version}:{method}"

    async def call(self, method: str, url: str, body: Any | None, params: Mapping[str, str] | None = None,
                   keys: KeyChoice | None = None, model: str = "") -> tuple[aiohttp.ClientResponse, Key]:
        """One call with a fresh token; a 401 forces one refresh and one more try."""
        self._token = await self.creds.token()
        try:
            return await super().call(method, url, body, params, keys, model)
        except BackendError as exc:
            if exc.status != 401:
                raise
        self._token = await self.creds.token(force_refresh=True)
        return await super().call(method, url, body, params, keys, model)

    # ---- project and tier ----------------------------------------------------------------------

    async def project(self) -> str:
        if self._project:
            return self._project
        async with self._project_lock:
            if not self._project:
                self._project = await self._setup()
        return self._project

    async def _post(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response, _ = await self.call("POST", self._url(method), body)
        except BackendError as exc:
            if exc.status == 403 and self.cloud_project:
                raise BackendError("auth", f"permission denied for GCP project {self.gcp_project!r}: enable the "
                                   "Cloud AI Companion API (cloudaicompanion.googleapis.com), check billing and "
                                   f"grant roles/cloudaicompanion.user ({exc.message})", status=403,
                                   backend=self.name) from None
            raise
        data = await self.read_json(response)
        return data if isinstance(data, dict) else {}

    async def _setup(self) -> str:
        """loadCodeAssist, then onboardUser when no tier is assigned yet; checks the tier."""
        if self.cloud_project and not self.gcp_project:
            raise BackendError("auth", "gemini-cli-cloud-project needs gcp_project_id (or GCP_PROJECT_ID)",
                               backend=self.name)
        metadata = dict(_METADATA, **({"duetProject": self.gcp_project} if self.gcp_project else {}))
        load_body: dict[str, Any] = {"metadata": metadata}
        if self.gcp_project:
            load_body["cloudaicompanionProject"] = self.gcp_project
        loaded = await self._post("loadCodeAssist", load_body)
        current = (loaded.get("currentTier") or {}).get("id")
        if current:
            self._check_tier(current)
            project = loaded.get("cloudaicompanionProject") or self.gcp_project
            if not project:
                raise BackendError("auth", "Code Assist assigned no project to this account", backend=self.name)
            return str(project)
        tier = self._choose_tier(loaded.get("allowedTiers") or [])
        onboard_body: dict[str, Any] = {"tierId": tier, "metadata": metadata}
        if self.gcp_project:
            onboard_body["cloudaicompanionProject"] = self.gcp_project
        operation = await self._post("onboardUser", onboard_body)
        for _ in range(ONBOARD_MAX_POLLS):
            if operation.get("done"):
                project = ((operation.get("response") or {}).get("cloudaicompanionProject") or {}).get("id")
                project = project or self.gcp_project
                if not project:
                    raise BackendError("auth", "onboarding finished without a project", backend=self.name)
                return str(project)
            await asyncio.sleep(ONBOARD_POLL_SECONDS)
            # A long-running operation: poll it by name (as Gemini CLI does); without a name, ask again.
            name = operation.get("name")
            if isinstance(name, str) and name:
                response, _ = await self.call("GET", f"{self.base_url}/{self.api_version}/{name}", None)
                data = await self.read_json(response)
                operation = data if isinstance(data, dict) else {}
            else:
                operation = await self._post("onboardUser", onboard_body)
        raise BackendError("timeout", "Code Assist onboarding did not finish", backend=self.name)

    def _check_tier(self, tier: str) -> None:
        if self.cloud_project and tier not in PAID_TIERS:
            raise BackendError("auth", f"GCP project {self.gcp_project!r} is on the {tier}; gemini-cli-cloud-project "
                               "needs the standard or enterprise tier (use gemini-cli-oauth-personal for the free "
                               "tier)", backend=self.name)

    def _choose_tier(self, allowed: list[Any]) -> str:
        ids = [t.get("id") for t in allowed if isinstance(t, dict)]
        default = next((t.get("id") for t in allowed if isinstance(t, dict) and t.get("isDefault")), None)
        if self.cloud_project:
            paid = [t for t in ids if t in PAID_TIERS]
            if not paid:
                raise BackendError("auth", f"GCP project {self.gcp_project!r} cannot use the standard or enterprise "
                                   f"tier (allowed: {', '.join(map(str, ids)) or 'none'})", backend=self.name)
            return str(default if default in paid else paid[0])
        return str(default or (ids[0] if ids else "free-tier"))

    # ---- chat ----------------------------------------------------------------------------------

    async def _wrapped(self, request: ChatRequest) -> dict[str, Any]:
        return {"model": request.model, "project": await self.project(), "user_prompt_id": uuid.uuid4().hex,
                "request": self.codec.encode_request(request)}

    async def complete(self, request: ChatRequest, keys: KeyChoice | None = None) -> ChatResponse:
        response, _ = await self.call("POST", self._url("generateContent"), await self._wrapped(request), keys=keys,
                                      model=request.model)
        reply = self.decode(_inner(await self.read_json(response)))
        reply.model = reply.model or request.model
        return reply

    def stream(self, request: ChatRequest, keys: KeyChoice | None = None) -> AsyncIterator[StreamEvent]:
        async def open_response() -> aiohttp.ClientResponse:
            return (await self.call("POST", self._url("streamGenerateContent"), await self._wrapped(request),
                                    params={"alt": "sse"}, keys=keys, model=request.model))[0]
        return self.events(open_response, _inner)

    async def list_models(self) -> list[str]:
        return list(self.settings.models) or list(DEFAULT_MODELS)

    async def fetch_models(self) -> list[str]:
        return await self.list_models()

    async def health(self) -> Health:
        """Cheap and real: a valid token and a resolved project."""
        import time

        started = time.perf_counter()
        try:
            await self.project()
        except BackendError as exc:
            return Health(False, (time.perf_counter() - started) * 1000, exc.kind)
        return Health(True, (time.perf_counter() - started) * 1000)
