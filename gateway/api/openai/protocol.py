"""Request schemas for the OpenAI-compatible endpoints.

They check the fields the gateway relies on and the types clients commonly get wrong; any other
field is passed to the upstream untouched (`extra="allow"`), so new OpenAI parameters work
without a gateway release.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

#: JSON integers past 64 bits would reach us as floats (orjson) and upstreams reject them anyway:
#: counts and ids are bounded here so such values get a clear 400 from the gateway.
INT32_MAX = 2**31 - 1
#: Seeds: JSON's safe integers. Past 2^53 a number and its neighbours are the same double, so
#: clients, proxies and schema validators that read JSON numbers as doubles disagree on the value.
SAFE_INT_MIN, SAFE_INT_MAX = -(2**53 - 1), 2**53 - 1


def _json_integer(value: Any) -> Any:
    """JSON Schema counts 16.0 as an integer; strict validation would not. Bools stay refused."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def json_int(ge: int, le: int) -> Any:
    """A JSON integer in [ge, le]: an int, or a float without a fractional part; never a bool or a
    string. (The bounds go before the validator, or pydantic's JSON schema loses them.)"""
    return Annotated[int, Field(ge=ge, le=le), BeforeValidator(_json_integer)]


TokenId = json_int(0, INT32_MAX)
TokenCount = json_int(1, INT32_MAX)

#: Array lengths. Besides documenting the limits, `fail_fast` stops at the first bad element: a
#: body of a million wrong elements would otherwise build a million error records (hundreds of MB).
MAX_MESSAGES = 100_000
MAX_TOKENS_PER_PROMPT = 2**20
MAX_BATCH = 2048  # prompts or embedding inputs per request (OpenAI's own limit)


def bounded(item: Any, max_items: int, min_items: int = 0) -> Any:
    return Annotated[list[item], Field(min_length=min_items, max_length=max_items, fail_fast=True)]


TokenIds = bounded(TokenId, MAX_TOKENS_PER_PROMPT)


class _Open(BaseModel):
    # strict: JSON types as documented ("2" is not an integer, true is not 1); the body is relayed
    # as it came, so a value the gateway coerced would still reach the upstream with the wrong type
    model_config = ConfigDict(extra="allow", strict=True)


class ContentPart(_Open):
    """`text`, `image_url`, `input_audio`, `file`, `refusal`, ... A `text` part's text is a string."""

    model_config = ConfigDict(
        extra="allow",
        strict=True,
        json_schema_extra={
            "anyOf": [
                {"properties": {"type": {"not": {"const": "text"}}}},
                {"properties": {"type": {"const": "text"}, "text": {"type": "string"}}, "required": ["text"]},
            ]
        },
    )

    type: str = Field(min_length=1)

    @model_validator(mode="after")
    def _text_is_a_string(self) -> ContentPart:
        if self.type == "text" and not isinstance(getattr(self, "text", None), str):
            raise ValueError("a text part needs a string 'text'")
        return self


class ToolCallFunction(_Open):
    name: str
    arguments: str  # JSON text, as OpenAI sends and expects it


class ToolCall(_Open):
    id: str | None = None
    type: str | None = None
    function: ToolCallFunction


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | bounded(ContentPart, MAX_MESSAGES) | None = None
    name: str | None = None
    tool_calls: bounded(ToolCall, MAX_MESSAGES) | None = None
    tool_call_id: str | None = None


class StreamOptions(_Open):
    include_usage: bool | None = None


class ToolFunction(_Open):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Open):
    type: Literal["function"] = "function"
    function: ToolFunction


class _Sampling(_Open):
    model: str = Field(min_length=1, max_length=256)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    n: json_int(1, 128) | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: TokenCount | None = None
    stop: str | bounded(str, 64) | None = None
    seed: json_int(SAFE_INT_MIN, SAFE_INT_MAX) | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    user: str | None = None


class ChatCompletionRequest(_Sampling):
    messages: bounded(ChatMessage, MAX_MESSAGES, min_items=1)
    max_completion_tokens: TokenCount | None = None
    tools: bounded(Tool, 1024) | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None


class CompletionRequest(_Sampling):
    prompt: str | bounded(str, MAX_BATCH) | TokenIds | bounded(TokenIds, MAX_BATCH)


class EmbeddingRequest(_Open):
    model: str = Field(min_length=1, max_length=256)
    input: str | bounded(str, MAX_BATCH) | TokenIds | bounded(TokenIds, MAX_BATCH)
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: TokenCount | None = None
    user: str | None = None


# --- responses (what the OpenAPI document promises; upstream answers are relayed as they come) ---


class Usage(_Open):
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int | None = Field(default=None, ge=0)
    total_tokens: int = Field(ge=0)


class AssistantMessage(_Open):
    role: Literal["assistant"]
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChatChoice(_Open):
    index: int = Field(ge=0)
    message: AssistantMessage
    finish_reason: str | None = None


class ChatCompletion(_Open):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None


class CompletionChoice(_Open):
    index: int = Field(ge=0)
    text: str
    finish_reason: str | None = None


class Completion(_Open):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class Embedding(_Open):
    object: Literal["embedding"]
    index: int = Field(ge=0)
    embedding: list[float] | str  # a base64 string with `encoding_format: base64`


class EmbeddingList(_Open):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: Usage | None = None


class Model(_Open):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[Model]
