"""Upstream failures, classified once so retry, fallback and client-facing errors agree."""

from __future__ import annotations

from gateway.errors import GatewayError

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


class UpstreamError(Exception):
    """A failed upstream attempt.

    `status` is the upstream HTTP status (None when no response came back: timeout, refused or
    reset connection). `message` is safe to show to clients for 4xx passthrough.
    """

    def __init__(
        self,
        error_class: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.attempts = 0  # set by the dispatcher: tries made across the whole fallback chain

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in RETRYABLE_STATUS

    def to_client_error(self, deployment: str) -> GatewayError:
        """What the client sees once retries and fallbacks are exhausted."""
        if (
            self.status is not None
            and 400 <= self.status < 500
            and self.status not in (401, 403, 404, 408, 429)
        ):
            # The upstream judged the request itself invalid (e.g. context too long): pass it on.
            return GatewayError(self.status, self.message, code="upstream_rejected_request")
        if self.error_class in ("timeout", "connect_timeout") or self.status in (408, 504):
            return GatewayError(
                504, f"Upstream {deployment!r} timed out.", type="api_error", code="upstream_timeout"
            )
        if self.status in (429, 529, 503):
            headers = {"retry-after": str(max(1, round(self.retry_after or 1)))}
            return GatewayError(
                503,
                f"Upstream {deployment!r} is overloaded or rate-limited; retry later.",
                type="api_error",
                code="upstream_overloaded",
                headers=headers,
            )
        if self.status in (401, 403, 404):
            return GatewayError(
                502,
                f"Upstream {deployment!r} rejected the gateway's request ({self.status}); "
                "check the deployment's credentials and model name.",
                type="api_error",
                code="upstream_misconfigured",
            )
        return GatewayError(
            502,
            f"Upstream {deployment!r} failed ({self.error_class}).",
            type="api_error",
            code="upstream_error",
        )


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from LLM providers; fall back to our own backoff
