"""Anthropic Messages API: the request schema and errors in Anthropic's shape.

Like the OpenAI schemas, they check what the gateway relies on and the types clients commonly get
wrong; other fields pass through (`extra="allow"`) so new API parameters work without a release.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.responses import Response

from gateway.api.openai.protocol import json_int
from gateway.errors import GatewayError

#: Anthropic's error `type` for each HTTP status (https://docs.anthropic.com/en/api/errors).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class _Open(BaseModel):
    # strict: JSON types as documented ("2" is not an integer, true is not 1); the body is relayed
    # as it came, so a value the gateway coerced would still reach the upstream with the wrong type
    model_config = ConfigDict(extra="allow", strict=True)


class Block(_Open):
    """A content block (`text`, `image`, `tool_use`, `tool_result`, `thinking`, ...)."""

    type: str = Field(min_length=1)


class TextBlock(_Open):
    type: Literal["text"]
    text: str


class Message(_Open):
    role: Literal["user", "assistant"]
    content: str | Annotated[list[Block], Field(min_length=1, max_length=100_000, fail_fast=True)]


class Tool(_Open):
    name: str = Field(min_length=1, max_length=128)
    description: str | None = None
    # An object when given; absent on server tools (`type: web_search_...`).
    input_schema: dict[str, Any] = Field(default=None, json_schema_extra={"type": "object"})


class ToolChoice(_Open):
    model_config = ConfigDict(
        extra="allow",
        strict=True,
        json_schema_extra={
            "anyOf": [
                {"properties": {"type": {"enum": ["auto", "any", "none"]}}},
                {"properties": {"type": {"const": "tool"}}, "required": ["name"]},
            ]
        },
    )

    type: Literal["auto", "any", "tool", "none"]
    name: str = Field(default=None, min_length=1, description="Required with `type: tool`.")

    @model_validator(mode="after")
    def _tool_needs_name(self) -> ToolChoice:
        if self.type == "tool" and self.name is None:
            raise ValueError("tool_choice of type 'tool' needs a 'name'")
        return self


class MessagesRequest(_Open):
    model: str = Field(min_length=1, max_length=256)
    max_tokens: json_int(1, 2**31 - 1)
    messages: list[Message] = Field(min_length=1, max_length=100_000, fail_fast=True)
    system: str | Annotated[list[TextBlock], Field(max_length=100_000, fail_fast=True)] | None = None
    stream: bool | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: json_int(0, 2**31 - 1) | None = None
    stop_sequences: Annotated[list[str], Field(max_length=1024, fail_fast=True)] | None = None
    tools: Annotated[list[Tool], Field(max_length=1024, fail_fast=True)] | None = None
    tool_choice: ToolChoice | None = None
    metadata: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None


class ContentBlock(_Open):
    type: str


class MessageUsage(_Open):
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    cache_creation_input_tokens: int | None = Field(default=None, ge=0)
    cache_read_input_tokens: int | None = Field(default=None, ge=0)


class MessageResponse(_Open):
    """The answer (relayed as SSE events instead with `stream: true`)."""

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    content: list[ContentBlock]
    model: str
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: MessageUsage


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(error_body(status, message)),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def from_gateway_error(error: GatewayError, headers: dict[str, str] | None = None) -> Response:
    return error_response(error.status, error.message, {**error.headers, **(headers or {})})
