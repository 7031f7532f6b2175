"""OpenAI-style errors: `{"error": {"message", "type", "param", "code"}}` with the right HTTP status."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class GatewayError(Exception):
    """An error the client should see, with its HTTP status and OpenAI error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self, headers: dict[str, str] | None = None) -> Response:
        return Response(
            orjson.dumps(self.body()),
            status_code=self.status,
            media_type="application/json",
            headers={**self.headers, **(headers or {})},
        )


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


def unauthorized(message: str = "Invalid or missing API key.") -> GatewayError:
    return GatewayError(401, message, type="authentication_error", code="invalid_api_key")


def forbidden(message: str) -> GatewayError:
    return GatewayError(403, message, type="permission_error", code="forbidden")


def model_not_found(model: str, why: str | None = None) -> GatewayError:
    return GatewayError(
        404,
        f"The model {model!r} does not exist or you do not have access to it" + (f": {why}." if why else "."),
        type="invalid_request_error",
        param="model",
        code="model_not_found",
    )


def too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"Request body exceeds the limit of {limit} bytes.", code="request_too_large")
