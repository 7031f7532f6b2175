"""Redaction of personal data and secrets before a prompt/response pair is stored.

The default hook replaces matches with typed placeholders (``[EMAIL]``, ``[PHONE]``, ``[CARD]``,
``[IBAN]``, ``[IP]``, ``[SECRET]``, ``[SSN]``). Card numbers must pass the Luhn check, IBANs the
ISO 13616 mod-97 check and IP addresses `ipaddress`, so order numbers, dates and versions survive.

A hook is any ``Callable[[str], str]``; `load_hook("package.module:function")` resolves a dotted path,
so a deployment can plug in its own (e.g. Microsoft Presidio) without touching the gateway.
"""

from __future__ import annotations

import ipaddress
import pkgutil
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Hook = Callable[[str], str]


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _ip_valid(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Pattern:
    """A regex, its placeholder, an optional validator of the match and the group to replace."""

    label: str
    regex: re.Pattern[str]
    check: Callable[[str], bool] | None = None
    group: int = 0


_SECRETS = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|\b(?:sk|pk|rk)-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_]{16,}"  # OpenAI, Anthropic, Stripe; Tiergate's own
    r"|\bAKIA[0-9A-Z]{16}\b"  # AWS access key id
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}\b|\bgithub_pat_[A-Za-z0-9_]{30,}"
    r"|\bxox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|\bAIza[0-9A-Za-z_-]{35}\b"  # Google API key
    r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWT
    r"|(?i:\bbearer\s+)[A-Za-z0-9._~+/-]{16,}=*"
)
# `password: hunter2hunter2`, `api_key="..."`: only the value is replaced.
_ASSIGNED_SECRET = re.compile(
    r"(?i)\b(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|password|passwd)"
    r"\s*[:=]\s*[\"']?([^\s\"',;]{8,})"
)

DEFAULT_PATTERNS: tuple[Pattern, ...] = (
    Pattern("SECRET", _SECRETS),
    Pattern("SECRET", _ASSIGNED_SECRET, group=1),
    Pattern("EMAIL", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")),
    Pattern("IBAN", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"), iban_valid),
    Pattern(
        "CARD",
        re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"),
        lambda m: luhn_valid(re.sub(r"\D", "", m)),
    ),
    Pattern("SSN", re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b")),
    Pattern(
        "PHONE",
        re.compile(
            r"(?<![\w+])\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}\b"  # +CC ...
            r"|(?<![\w-])(?:\(\d{3}\)\s?|\d{3}[.-])\d{3}[.-]\d{4}\b"  # (555) 123-4567, 555-123-4567
        ),
    ),
    Pattern("IP", re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), _ip_valid),
    Pattern(
        "IP",
        re.compile(r"(?<![\w:])(?=[0-9A-Fa-f]*:[0-9A-Fa-f]*:)[0-9A-Fa-f:]{2,39}(?![\w:])"),  # IPv6
        _ip_valid,
    ),
)


class Redactor:
    """Applies patterns in order (secrets first, so a key is not half-eaten as a phone number)."""

    def __init__(self, patterns: Iterable[Pattern] = DEFAULT_PATTERNS) -> None:
        self.patterns = tuple(patterns)

    def __call__(self, text: str) -> str:
        for pattern in self.patterns:
            text = pattern.regex.sub(lambda m, p=pattern: self._replace(m, p), text)
        return text

    @staticmethod
    def _replace(match: re.Match[str], pattern: Pattern) -> str:
        value = match.group(pattern.group)
        if pattern.check is not None and not pattern.check(value):
            return match.group(0)
        start, end = match.span(pattern.group)
        whole_start = match.start(0)
        whole = match.group(0)
        return whole[: start - whole_start] + f"[{pattern.label}]" + whole[end - whole_start :]


default_redactor = Redactor()


def load_hook(path: str | None) -> Hook:
    """The default redactor, or the callable at ``package.module:function``."""
    if not path:
        return default_redactor
    hook = pkgutil.resolve_name(path)
    if not callable(hook):
        raise TypeError(f"redaction hook {path!r} is not callable")
    return hook


def redact_message(message: dict[str, Any], hook: Hook) -> dict[str, Any]:
    """A copy of a chat message with its text, text parts and tool-call arguments redacted."""
    out = dict(message)
    content = message.get("content")
    if isinstance(content, str):
        out["content"] = hook(content)
    elif isinstance(content, list):
        out["content"] = [
            {**part, "text": hook(part["text"])} if isinstance(part.get("text"), str) else part
            for part in content
        ]
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {
                **call,
                "function": {**call["function"], "arguments": hook(call["function"].get("arguments") or "")},
            }
            if isinstance(call.get("function"), dict)
            else call
            for call in message["tool_calls"]
        ]
    return out
