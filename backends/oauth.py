"""Gemini CLI's OAuth credentials: read ``oauth_creds.json``, refresh before expiry, write back.

google-auth does the refresh (its ``requests`` transport, run in a thread: it happens about once an
hour and must not block the event loop). The refreshed token is written back atomically in the
same format Gemini CLI uses, so the CLI and the proxy can share one file. Tokens never leave this
module except as the ``Authorization`` header value.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import tempfile
from typing import Any

from backends.base import BackendError
from backends.redaction import redact_url

DEFAULT_TOKEN_URL = "https://oauth2.googleapis.com/token"
# Gemini CLI's published "installed application" OAuth client: refresh tokens issued to the CLI can
# only be refreshed with the same client. Public by design (installed apps cannot keep secrets).
GEMINI_CLI_CLIENT_ID = "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com"
GEMINI_CLI_CLIENT_SECRET = "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"
SCOPES = ["https://www.googleapis.com/auth/cloud-platform", "https://www.googleapis.com/auth/userinfo.email",
          "https://www.googleapis.com/auth/userinfo.profile"]
REFRESH_MARGIN = dt.timedelta(minutes=5)


def credentials_file(credentials_path: str | None) -> str:
    """``credentials_path`` may name the directory (``~/.gemini``) or the file itself."""
    path = os.path.expanduser(credentials_path or "~/.gemini")
    return path if path.endswith(".json") else os.path.join(path, "oauth_creds.json")


class OAuthCredentials:
    def __init__(self, path: str, token_url: str = DEFAULT_TOKEN_URL, client_id: str = GEMINI_CLI_CLIENT_ID,
                 client_secret: str = GEMINI_CLI_CLIENT_SECRET, backend: str = "") -> None:
        self.path = path
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.backend = backend
        self._creds: Any = None
        self._raw: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    def _fail(self, message: str) -> BackendError:
        return BackendError("auth", message, backend=self.backend)

    def _load(self) -> None:
        from google.oauth2.credentials import Credentials

        try:
            with open(self.path, encoding="utf-8") as fh:
                raw = json.load(fh)
        except FileNotFoundError:
            raise self._fail(f"no OAuth credentials at {self.path}: run `gemini` once and log in with Google, "
                             "or set credentials_path / GEMINI_CREDENTIALS_PATH") from None
        except (OSError, ValueError) as exc:
            raise self._fail(f"cannot read OAuth credentials at {self.path}: {type(exc).__name__}") from None
        if not isinstance(raw, dict) or not raw.get("refresh_token") and not raw.get("access_token"):
            raise self._fail(f"{self.path} holds no access_token or refresh_token")
        expiry = None
        if isinstance(raw.get("expiry_date"), (int, float)):
            expiry = dt.datetime.fromtimestamp(raw["expiry_date"] / 1000, dt.timezone.utc).replace(tzinfo=None)
        self._raw = raw
        self._creds = Credentials(
            token=raw.get("access_token"), refresh_token=raw.get("refresh_token"), token_uri=self.token_url,
            client_id=self.client_id, client_secret=self.client_secret, scopes=SCOPES, expiry=expiry,
        )

    def _needs_refresh(self) -> bool:
        creds = self._creds
        if creds is None or not creds.token:
            return True
        if creds.expiry is None:
            return False
        return creds.expiry - REFRESH_MARGIN <= dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)

    def _refresh_blocking(self) -> None:
        import google.auth.exceptions
        from google.auth.transport.requests import Request

        if not self._creds.refresh_token:
            raise self._fail(f"the access token in {self.path} expired and there is no refresh_token; log in again")
        try:
            self._creds.refresh(Request())
        except google.auth.exceptions.RefreshError as exc:
            detail = exc.args[0] if exc.args else "refresh failed"
            raise self._fail(f"OAuth token refresh failed ({str(detail).split(':')[0]}); log in again with `gemini`") from None
        except google.auth.exceptions.TransportError:
            raise BackendError("connection", f"cannot reach the OAuth token endpoint {redact_url(self.token_url)}",
                               backend=self.backend) from None
        try:
            self._write_back()
        except OSError as exc:
            # A read-only or full disk is this backend's failure, not the request's: a classified
            # error lets dispatch fail over (a bare OSError was a 500). The refreshed token stays
            # in memory, so the next request uses it; writing is tried again at the next refresh.
            raise self._fail(f"cannot write the refreshed OAuth token back to {self.path}: "
                             f"{exc.strerror or type(exc).__name__}") from None

    def _write_back(self) -> None:
        """Same file, same format, atomically (tmp file + fsync + rename), owner-only permissions.
        The fsync comes before the rename, so a crash leaves the old file or the whole new one,
        never an empty file under the real name (Gemini CLI's login would be lost)."""
        creds = self._creds
        data = dict(self._raw)
        data["access_token"] = creds.token
        if creds.refresh_token:
            data["refresh_token"] = creds.refresh_token
        if creds.expiry is not None:
            data["expiry_date"] = int(creds.expiry.replace(tzinfo=dt.timezone.utc).timestamp() * 1000)
        data.setdefault("token_type", "Bearer")
        directory = os.path.dirname(self.path) or "."
        fd, tmp = tempfile.mkstemp(prefix=".oauth_creds.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except OSError:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self._raw = data

    async def token(self, force_refresh: bool = False) -> str:
        """A valid access token, refreshed first when it expires within five minutes."""
        async with self._lock:
            if self._creds is None:
                await asyncio.to_thread(self._load)
            if force_refresh or self._needs_refresh():
                await asyncio.to_thread(self._refresh_blocking)
            return str(self._creds.token)
