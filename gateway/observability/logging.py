"""Log hygiene: prompts and keys stay out of the logs unless `log_prompts` is on.

The gateway's own log lines never carry request content (only ids, classes, counts). Libraries on
the request path do: litellm logs every call's full messages at DEBUG, httpx logs request URLs at
INFO (Gemini's API key travels in the URL), the HTTP clients trace payloads at DEBUG and the
database drivers log statement parameters. An
operator turning the log level up to debug something must not start writing prompts to disk, so
their records below WARNING are dropped by a filter on those loggers (a filter, unlike a level,
survives anyone calling `setLevel`). With `log_prompts: true` they pass, and the gateway logs each
request body itself (truncated) at INFO.
"""

from __future__ import annotations

import logging
import traceback

#: Loggers of libraries that log request or response payloads (or URLs with credentials).
PAYLOAD_LOGGERS = (
    "LiteLLM",
    "LiteLLM Router",
    "LiteLLM Proxy",
    "litellm",
    "httpx",
    "httpcore",
    "openai",
    "aiohttp",
    # database drivers log statement parameters: ledger rows, distillation samples
    "sqlalchemy.engine",
    "aiosqlite",
    "asyncpg",
    "redis",
)

#: Longest request body logged with `log_prompts` on.
MAX_LOGGED_BODY = 16 * 1024

_state = {"log_prompts": False}


class PayloadFilter(logging.Filter):
    """Drops a payload logger's records below WARNING unless prompts may be logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _state["log_prompts"] or record.levelno >= logging.WARNING


_FILTER = PayloadFilter()


def install(log_prompts: bool) -> None:
    """Apply the policy process-wide (idempotent; the last gateway created in a process decides)."""
    _state["log_prompts"] = log_prompts
    # A logger's filters see only its own records, not its children's: filter every existing
    # descendant too (the libraries are imported by now; their named loggers exist).
    names = set(PAYLOAD_LOGGERS) | {"sqlalchemy.engine.Engine"}
    names |= {
        name
        for name in list(logging.root.manager.loggerDict)
        if any(name.startswith(prefix + ".") for prefix in PAYLOAD_LOGGERS)
    }
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def prompts_allowed() -> bool:
    return _state["log_prompts"]


def log_unexpected(logger: logging.Logger, message: str, *args: object, exc: BaseException) -> None:
    """Log an unexpected exception with its traceback. Exception messages can quote request content
    (a parser's `input_value=...`, a library echoing a payload): unless prompts may be logged, the
    messages of the exception and of its causes are left out; types and frames stay."""
    if prompts_allowed():
        logger.error(message, *args, exc_info=exc)
        return
    lines = []
    chain: BaseException | None = exc
    while chain is not None and len(lines) < 8:
        frames = "".join(traceback.format_tb(chain.__traceback__))
        lines.append(f"{type(chain).__module__}.{type(chain).__qualname__} (message withheld)\n{frames}")
        chain = chain.__cause__ or chain.__context__
    logger.error(message + "\n%s", *args, "\nwhich happened while handling\n".join(reversed(lines)))
