"""The fake provider's Google Code Assist side (what Gemini CLI's OAuth login talks to) and
Google's OAuth token endpoint: tiers, onboarding, long-running operations, project checks,
refresh-token grants."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from router.wire.codec import CodecError
from router.wire import gemini as gemini_wire
from router.wire.canonical import ChatRequest, ChatResponse

from . import gemini
from .gemini import google_error, google_error_body
from .recording import RECORD, RecordedRequest, json_response
from .wire_format import WireFormat

TIERS: dict[str, dict[str, Any]] = {
    "free-tier": {"id": "free-tier", "name": "Gemini Code Assist for individuals",
                  "description": "Gemini-powered code suggestions and chat in multiple IDEs",
                  "userDefinedCloudaicompanionProject": False},
    "standard-tier": {"id": "standard-tier", "name": "Gemini Code Assist",
                      "description": "Unlimited coding assistant with the most powerful Gemini models",
                      "userDefinedCloudaicompanionProject": True},
    "legacy-tier": {"id": "legacy-tier", "name": "Gemini Code Assist for individuals (legacy)",
                    "description": "Gemini Code Assist legacy tier", "userDefinedCloudaicompanionProject": True},
}


@dataclass
class CodeAssistState:
    """What ``loadCodeAssist``/``onboardUser`` report, and the project checks on generation.

    ``onboarded`` gives ``currentTier`` (else only ``allowedTiers`` with ``tier`` as default);
    ``project`` is the assigned ``cloudaicompanionProject`` (free tier: the managed project;
    None for a user-defined-project tier whose client must bring its own). Projects in
    ``forbidden_projects`` get 403 PERMISSION_DENIED everywhere. ``pending_polls`` > 0 makes
    ``onboardUser`` return ``done: false`` and ``GET /v1internal/operations/..`` finish after
    that many polls.
    """

    tier: str = "free-tier"
    onboarded: bool = False
    project: str | None = None
    managed_project: str = "fake-managed-project-123456"
    forbidden_projects: set[str] = field(default_factory=set)
    pending_polls: int = 0
    ineligible_tiers: list[dict[str, Any]] = field(default_factory=list)
    extra_load_fields: dict[str, Any] = field(default_factory=dict)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"polls", "response"}

    def tier_info(self, tier_id: str | None = None, default: bool = False) -> dict[str, Any]:
        info = dict(TIERS.get(tier_id or self.tier, {"id": tier_id or self.tier, "name": tier_id or self.tier}))
        if default:
            info["isDefault"] = True
        return info


@dataclass
class OAuthState:
    """The ``/token`` endpoint: which refresh tokens work (None = any), whether to fail, what it minted."""

    refresh_tokens: set[str] | None = None
    client_id: str | None = None  # when set, other client ids get 401 invalid_client
    fail: bool = False  # every refresh answers 400 invalid_grant
    expires_in: int = 3599
    scope: str = ("https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email "
                  "https://www.googleapis.com/auth/userinfo.profile openid")
    refresh_calls: list[dict[str, str]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)


def auth_error(key: str | None) -> web.Response:
    """cloudcode-pa's 401 for a missing or unusable Bearer token."""
    reason = "CREDENTIALS_MISSING" if not key else "ACCESS_TOKEN_TYPE_UNSUPPORTED"
    return json_response(google_error(401, reason=reason, domain="googleapis.com"), 401)


class CodeAssistRoutes:
    """Route handlers of Code Assist and OAuth (mixed into :class:`fakes.provider.FakeProvider`,
    on top of the engine in :mod:`fakes.core`: ``_generate``, ``_auth_error``, ``models``)."""

    def _add_code_assist_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1internal:loadCodeAssist", self._load_code_assist)
        router.add_post("/v1internal:onboardUser", self._onboard_user)
        router.add_post("/v1internal:generateContent", self._code_assist_generate)
        router.add_post("/v1internal:streamGenerateContent", self._code_assist_generate)
        router.add_get("/v1internal/operations/{name}", self._get_operation)
        router.add_post("/token", self._token)

    async def _code_assist_generate(self, request: web.Request) -> web.StreamResponse:
        record: RecordedRequest = request[RECORD]
        stream = request.path.endswith(":streamGenerateContent")
        denied = self._auth_error(request, "code_assist")
        body = record.body if isinstance(record.body, dict) else {}
        if denied is None:
            denied = self._project_error(body.get("project"), for_generation=True)
        return await self._generate(request, "code_assist", str(body.get("model") or ""), stream,
                                    sse=request.query.get("alt") == "sse", denied=denied)

    # --- Code Assist --------------------------------------------------------------------------

    def _project_error(self, project: Any, for_generation: bool = False) -> web.Response | None:
        """403 for a forbidden project (or, on generation, one other than the assigned project)."""
        state = self.code_assist
        if for_generation and not project:
            return json_response(google_error(400, "Invalid project: project is required.", domain="cloudcode-pa.googleapis.com"), 400)
        wrong = for_generation and state.project is not None and project != state.project
        if project and (project in state.forbidden_projects or wrong):
            message = (f"Permission 'cloudaicompanion.companions.generateChat' denied on resource "
                       f"'//cloudaicompanion.googleapis.com/projects/{project}/locations/global' (or it may not exist).")
            return json_response(google_error(403, message, reason="IAM_PERMISSION_DENIED",
                                      domain="cloudaicompanion.googleapis.com"), 403)
        return None

    async def _load_code_assist(self, request: web.Request) -> web.Response:
        """``LoadCodeAssistResponse``: ``currentTier`` once onboarded, else ``allowedTiers`` to pick from."""
        record: RecordedRequest = request[RECORD]
        record.endpoint = "loadCodeAssist"
        denied = self._auth_error(request, "code_assist")
        body = record.body if isinstance(record.body, dict) else {}
        denied = denied or self._project_error(body.get("cloudaicompanionProject"))
        if denied is not None:
            return denied
        state = self.code_assist
        allowed = [state.tier_info(t, default=(t == state.tier)) for t in TIERS]
        if state.tier not in TIERS:
            allowed.insert(0, state.tier_info(default=True))
        out: dict[str, Any] = {"allowedTiers": allowed}
        if state.onboarded:
            out["currentTier"] = state.tier_info()
            if state.project:
                out["cloudaicompanionProject"] = state.project
        if state.ineligible_tiers:
            out["ineligibleTiers"] = state.ineligible_tiers
        out.update(state.extra_load_fields)
        return json_response(out)

    async def _onboard_user(self, request: web.Request) -> web.Response:
        """``OnboardUserRequest`` -> a long-running operation; done at once unless ``pending_polls``."""
        record: RecordedRequest = request[RECORD]
        record.endpoint = "onboardUser"
        denied = self._auth_error(request, "code_assist")
        body = record.body if isinstance(record.body, dict) else {}
        project = body.get("cloudaicompanionProject")
        denied = denied or self._project_error(project)
        if denied is not None:
            return denied
        tier_id = body.get("tierId") or self.code_assist.tier
        user_defined = TIERS.get(tier_id, {}).get("userDefinedCloudaicompanionProject", True)
        if not user_defined and project:
            # Gemini CLI (setup.ts): setting a project for the free tier "causes a Precondition Failed error".
            return json_response({"error": {"code": 400, "message": "Precondition check failed.",
                                    "status": "FAILED_PRECONDITION"}}, 400)
        state = self.code_assist
        assigned = project if user_defined else state.managed_project
        state.tier, state.onboarded = tier_id, True
        state.project = assigned or state.project
        response: dict[str, Any] = {"@type": "type.googleapis.com/google.internal.cloud.code.v1internal.OnboardUserResponse"}
        if assigned:
            response["cloudaicompanionProject"] = {"id": assigned, "name": assigned}
        name = f"operations/onboard-{next(self._counter)}"
        if state.pending_polls > 0:
            state.operations[name.split("/", 1)[1]] = {"polls": state.pending_polls, "response": response}
            return json_response({"name": name, "done": False})
        return json_response({"name": name, "done": True, "response": response})

    async def _get_operation(self, request: web.Request) -> web.Response:
        """``GET /v1internal/operations/{name}``: done once polled ``pending_polls`` times."""
        request[RECORD].endpoint = "getOperation"
        denied = self._auth_error(request, "code_assist")
        if denied is not None:
            return denied
        key = request.match_info["name"]
        operation = self.code_assist.operations.get(key)
        if operation is None:
            return json_response(google_error(404, f"Operation operations/{key} not found."), 404)
        operation["polls"] -= 1
        if operation["polls"] > 0:
            return json_response({"name": f"operations/{key}", "done": False})
        return json_response({"name": f"operations/{key}", "done": True, "response": operation["response"]})

    # --- OAuth --------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        """Google's token endpoint, refresh grant only: mints a Bearer token Code Assist accepts."""
        record: RecordedRequest = request[RECORD]
        record.endpoint, record.family = "token", "oauth"
        form = record.form if record.form is not None else (record.body if isinstance(record.body, dict) else {})
        form = {str(k): str(v) for k, v in form.items()}
        state = self.oauth
        state.refresh_calls.append(form)
        if form.get("grant_type") != "refresh_token":
            return json_response({"error": "unsupported_grant_type", "error_description": "Invalid grant_type: "
                          + form.get("grant_type", "")}, 400)
        if not form.get("client_id"):
            return json_response({"error": "invalid_request", "error_description": "Could not determine client ID from request."}, 400)
        if state.client_id is not None and form["client_id"] != state.client_id:
            return json_response({"error": "invalid_client", "error_description": "The OAuth client was not found."}, 401)
        known = state.refresh_tokens is None or form.get("refresh_token") in state.refresh_tokens
        if state.fail or not form.get("refresh_token") or not known:
            return json_response({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, 400)
        token = f"ya29.fake-{next(self._counter)}-{uuid.uuid4().hex[:12]}"
        state.issued.append(token)
        self.keys["code_assist"].add(token)
        return json_response({"access_token": token, "expires_in": state.expires_in, "token_type": "Bearer",
                      "scope": state.scope})


def decode_request(body: Any, model: str, stream: bool) -> ChatRequest:
    """Code Assist's envelope ``{"model", "project", "request": <a Gemini request>}``."""
    if not model:
        raise CodecError("model", "model: required field is missing")
    if not isinstance(body, dict) or not isinstance(body.get("request"), dict):
        raise CodecError("request", "request: required field is missing")
    return gemini_wire.decode_request(body["request"], model=model, stream=stream)


def encode_response(response: ChatResponse, keep_call_ids: bool) -> dict[str, Any]:
    return {"response": gemini.encode_response(response, keep_call_ids),
            "traceId": f"fake-trace-{uuid.uuid4().hex[:16]}"}


FORMAT = WireFormat(
    "code_assist", error=google_error_body("cloudcode-pa.googleapis.com"), auth_error=auth_error,
    decode=decode_request, encode=encode_response, stream_encoder=lambda _include_usage: gemini_wire.StreamEncoder(),
    google_frames=True, envelope=True,
)
