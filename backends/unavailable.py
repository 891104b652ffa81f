"""A backend whose connector type this build does not provide: every call fails clearly (502)."""

from __future__ import annotations

from typing import AsyncIterator

from router.canonical import ChatRequest, ChatResponse, StreamEvent

from .base import Backend, BackendError, Health


class UnavailableBackend(Backend):
    def __init__(self, name: str, type_: str) -> None:
        super().__init__(name)
        self.type = type_

    def _error(self) -> BackendError:
        return BackendError("connection", f"backend type {self.type!r} has no connector in this build", backend=self.name)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        raise self._error()

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        raise self._error()
        yield  # pragma: no cover - makes this an async generator

    async def health(self) -> Health:
        return Health(ok=False, error=self._error().message)
