"""The default redaction hook: each kind of personal data and secret, the checks that keep look-alikes
(order numbers, dates, versions, times) intact, messages and tool calls, and pluggable hooks."""

from __future__ import annotations

import pytest

from gateway.distill.redact import (
    Redactor,
    default_redactor,
    iban_valid,
    load_hook,
    luhn_valid,
    redact_message,
)
from gateway.distill.samples import build_sample, prompt_hash


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to john.doe+tag@mail.example.co.uk today", "write to [EMAIL] today"),
        ("call +1 415-555-0132 now", "call [PHONE] now"),
        ("office (415) 555-0199 or 415.555.0100", "office [PHONE] or [PHONE]"),
        ("London +44 20 7946 0958", "London [PHONE]"),
        ("Paris +33 1 42 68 53 00.", "Paris [PHONE]."),
        ("visa 4111 1111 1111 1111 ok", "visa [CARD] ok"),
        ("amex 3782-822463-10005", "amex [CARD]"),
        ("mc 5555555555554444", "mc [CARD]"),
        ("iban DE89 3704 0044 0532 0130 00", "iban [IBAN]"),
        ("iban GB82WEST12345698765432", "iban [IBAN]"),
        ("host 192.168.1.20 up", "host [IP] up"),
        ("v6 2001:db8::8a2e:370:7334 and ::1", "v6 [IP] and [IP]"),
        ("ssn 123-45-6789", "ssn [SSN]"),
        ("key sk-proj-a1b2c3d4e5f6g7h8i9j0k1l2", "key [SECRET]"),
        ("anthropic sk-ant-api03-abcdefghijklmnopqrstuv", "anthropic [SECRET]"),
        ("aws AKIAIOSFODNN7EXAMPLE", "aws [SECRET]"),
        ("gh ghp_abcdefghijklmnopqrstuvwxyz0123456789", "gh [SECRET]"),
        ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz123456", "Authorization: [SECRET]"),
        ('password: "hunter2hunter2"', 'password: "[SECRET]"'),
        ("API_KEY=0123456789abcdef", "API_KEY=[SECRET]"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N", "jwt [SECRET]"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY----- done",
            "[SECRET] done",
        ),
    ],
)
def test_each_kind_is_replaced_by_its_label(text, expected):
    assert default_redactor(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 fails Luhn",
        "order 1234567890123 and tracking 9400111899223100012345",
        "IBAN DE00 1234 5678 9012 3456 78 has a wrong check sum",
        "released 2024-11-21 at 12:30:45, version 3.11.4",
        "999.1.1.1 is not an address",
        "SSN-shaped 000-12-3456 and 666-12-3456 are never issued",
        "ratio 3:4:5 and a:b:c",
        "a short sk-123 token",
    ],
)
def test_look_alikes_survive(text):
    assert default_redactor(text) == text


def test_checksums():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid("DE88 3704 0044 0532 0130 00")


def test_messages_tool_arguments_and_content_parts():
    message = {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "mail x@y.org"},
            {"type": "image_url", "image_url": {"url": "u"}},
        ],
        "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "send", "arguments": '{"to": "x@y.org"}'}}
        ],
    }
    out = redact_message(message, default_redactor)
    assert out["content"][0]["text"] == "mail [EMAIL]" and out["content"][1] == message["content"][1]
    assert out["tool_calls"][0]["function"] == {"name": "send", "arguments": '{"to": "[EMAIL]"}'}
    assert message["content"][0]["text"] == "mail x@y.org"  # the request's own body is not touched


def test_custom_hooks_by_dotted_path_and_pattern_sets():
    assert load_hook(None) is default_redactor
    assert load_hook("tests.distill.test_redact:shout")("quiet") == "QUIET"
    with pytest.raises(TypeError):
        load_hook("tests.distill.test_redact:NOT_CALLABLE")
    emails_only = Redactor([p for p in default_redactor.patterns if p.label == "EMAIL"])
    assert emails_only("a@b.io 10.0.0.1") == "[EMAIL] 10.0.0.1"


def test_samples_redact_both_sides_or_neither_and_hash_normalised_prompts():
    pending = {
        "id": "r1",
        "messages": [{"role": "user", "content": "Mail  A@B.io", "refusal": None}],
        "answer": {"role": "assistant", "content": "done, a@b.io", "refusal": None, "annotations": []},
        "tools": None,
    }
    row = build_sample(dict(pending), default_redactor)
    assert row["messages"] == [{"role": "user", "content": "Mail  [EMAIL]"}]
    assert row["completion"] == {"role": "assistant", "content": "done, [EMAIL]"}
    raw = build_sample(dict(pending), None)
    assert raw["completion"]["content"] == "done, a@b.io" and raw["redacted"] is False
    same = prompt_hash([{"role": "user", "content": " mail   [email] "}], None)
    assert row["prompt_hash"] == same
    assert same != prompt_hash([{"role": "system", "content": "mail [email]"}], None)
    assert same != prompt_hash([{"role": "user", "content": "mail [email]"}], [{"function": {"name": "f"}}])


def shout(text: str) -> str:
    return text.upper()


NOT_CALLABLE = 3
