"""Reading and validating JSON request bodies: size limit first, then syntax, then schema."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from gateway.errors import GatewayError, invalid_request, too_large
from gateway.observability import logging as log_hygiene

log = logging.getLogger(__name__)

#: Default cap on JSON objects and arrays in one body (`Settings.max_json_containers`): parsed,
#: each costs 60-250 bytes of Python objects for as little as 2 bytes of JSON.
MAX_JSON_CONTAINERS = 250_000
_PARSE_INLINE_BYTES = 1 << 20


async def read_json(
    request: Request, limit: int, max_containers: int = MAX_JSON_CONTAINERS
) -> dict[str, Any]:
    """The body as a JSON object; 413 past `limit` bytes (checked before and while reading), 400
    past `max_containers` JSON objects and arrays (checked before parsing)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise invalid_request("The request body is empty; expected a JSON object.")
    # Cap objects and arrays before parsing them (brackets inside strings count too, which errs on
    # the safe side; counting is C-speed, and only bodies big enough to pass the cap are counted).
    if len(raw) > 2 * max_containers and raw.count(b"{") + raw.count(b"[") > max_containers:
        raise invalid_request(
            f"The request body has more than {max_containers} JSON objects and arrays.",
            code="invalid_json",
        )
    try:
        # orjson refuses nesting deeper than 1024: no runaway recursion. Big bodies are parsed
        # off the event loop (tens of milliseconds for megabytes).
        body = (
            orjson.loads(raw)
            if len(raw) < _PARSE_INLINE_BYTES
            else await asyncio.to_thread(orjson.loads, raw)
        )
    except orjson.JSONDecodeError as exc:
        raise invalid_request(f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.", code="invalid_json")
    return body


def log_request(request_id: str, endpoint: str, body: dict[str, Any]) -> None:
    """With `log_prompts` on: the request body (truncated), after authentication."""
    text = orjson.dumps(body)[: log_hygiene.MAX_LOGGED_BODY].decode(errors="replace")
    log.info("request %s %s body: %s", request_id, endpoint, text)


def validate(schema: type[BaseModel], body: dict[str, Any]) -> None:
    """Check `body` against `schema`; the first problem becomes an OpenAI-style 400."""
    try:
        schema.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None


def validation_error(exc: ValidationError) -> GatewayError:
    first = exc.errors(include_url=False)[0]
    param = ".".join(str(part) for part in first["loc"]) or None
    where = f" at '{param}'" if param else ""
    count = exc.error_count()
    more = f" ({count - 1} more problem{'s' if count > 2 else ''})" if count > 1 else ""
    return invalid_request(f"{first['msg']}{where}{more}.", param=param, code="invalid_value")
