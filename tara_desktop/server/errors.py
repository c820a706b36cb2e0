"""Errors the API answers with: an HTTP status and an OpenAI-style ``error`` object, never a traceback."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request the API refuses, as OpenAI does: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def unauthorized() -> ApiError:
    return ApiError(
        401,
        "a valid API key is needed: send 'Authorization: Bearer <token>' with TARA's token "
        "(shown in Settings and by `tara serve --show-token`)",
        code="invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )


def model_not_found(name: str) -> ApiError:
    return ApiError(
        404,
        f"the model {name!r} does not exist here; use 'tara', 'tara:<domain>' or a name from GET /v1/models",
        param="model",
        code="model_not_found",
    )


def busy(what: str) -> ApiError:
    return ApiError(
        429,
        f"{what} is busy and its queue is full; retry in a moment",
        type="rate_limit_error",
        code="queue_full",
        headers={"Retry-After": "1"},
    )


def overloaded() -> ApiError:
    return ApiError(
        503,
        "the server has as many requests as it accepts at once; retry in a moment",
        type="server_error",
        code="overloaded",
        headers={"Retry-After": "2"},
    )
