"""No key and no prompt text in logs unless `log_prompts` is on: every log record of every logger
(at DEBUG) and everything written to stdout/stderr is captured while requests succeed, stream,
fail upstream, fail validation and fail authentication."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator

import httpx
import openai
import pytest

PROMPT_MARK = "zebra-quartz-" + uuid.uuid4().hex[:12]


class Everything(logging.Handler):
    """Collects every record, from every logger, whatever its propagation settings."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.excluded_threads = {threading.main_thread().name}

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        out = []
        for record in {id(r): r for r in self.records}.values():
            if record.name.startswith("gateway.simulator") or record.threadName in self.excluded_threads:
                continue  # the test's own clients and the simulated upstream are not the gateway
            out.append(f"{record.name} {record.levelname} {record.getMessage()}")
            if record.exc_info:
                out.append(logging.Formatter().formatException(record.exc_info))
            if record.stack_info:
                out.append(record.stack_info)
        return "\n".join(out)


@pytest.fixture
def all_logs() -> Iterator[Everything]:
    handler = Everything()
    loggers = [logging.getLogger()] + [
        logger for logger in logging.root.manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    saved = [(logger, logger.level, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger, level, disabled in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.disabled = disabled


@pytest.fixture
def faults(simulator):
    def add(**rule):
        if rule:
            httpx.post(f"{simulator.base_url}/_sim/faults", json=rule).raise_for_status()
        else:
            httpx.delete(f"{simulator.base_url}/_sim/faults").raise_for_status()

    yield add
    add()


def exercise(gw, key: str, faults) -> None:
    """Requests of every kind, each carrying the prompt mark."""
    prompt = f"Please summarise {PROMPT_MARK} in one line."
    messages = [{"role": "user", "content": prompt}]
    no_cache = {"x-tiergate-cache-bypass": "1"}  # failures must reach the upstream, not the cache
    client = openai.OpenAI(base_url=gw.openai_base_url, api_key=key, max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    for _chunk in client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True):
        pass
    client.chat.completions.create(model="claude-sonnet", messages=messages)  # through litellm
    client.completions.create(model="gpt-4o-mini", prompt=prompt)
    client.embeddings.create(model="gpt-4o-mini", input=prompt)
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    anthropic_body = {"model": "claude-sonnet", "max_tokens": 16, "messages": messages}
    assert httpx.post(gw.base_url + "/v1/messages", json=anthropic_body, headers=headers).status_code == 200
    # upstream failures: a 500 with no fallback left, a 400 passed through, a reset mid-stream
    faults(status=500, count=5, model="gpt-4o-mini")
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=messages, extra_headers=no_cache)
    faults()
    faults(status=400, count=1, model="gpt-4o-mini")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o-mini", messages=messages, extra_headers=no_cache)
    faults(status=500, count=5, model="claude-sonnet-4-5")
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="claude-sonnet", messages=messages, extra_headers=no_cache)
    faults()
    faults(kind="reset", after_tokens=3, count=1, model="gpt-4o-mini")
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, stream=True, extra_headers=no_cache
    )
    try:
        for _chunk in stream:
            pass
    except openai.APIError:
        pass  # the cut stream may surface as an error event
    # bad input that embeds the prompt and the key in the places parsers echo
    for bad in (
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "' + PROMPT_MARK.encode() + b'"',
        b'{"model": "gpt-4o-mini", "messages": [{"role": "' + PROMPT_MARK.encode() + b'", "content": "x"}]}',
        b'{"model": "gpt-4o-mini", "temperature": "' + PROMPT_MARK.encode() + b'", "messages": []}',
        b'{"model": "' + PROMPT_MARK.encode() + b'", "messages": [{"role": "user", "content": "x"}]}',
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "' + key.encode() + b'"}]',
    ):
        response = httpx.post(gw.openai_base_url + "/chat/completions", content=bad, headers=headers)
        assert 400 <= response.status_code < 500
    bad_anthropic = {**anthropic_body, "tool_choice": {"type": "tool", "x": PROMPT_MARK}}
    assert httpx.post(gw.base_url + "/v1/messages", json=bad_anthropic, headers=headers).status_code == 400
    # authentication failures: a near-miss of the real key, the key on an admin route
    for wrong in (key[:-2] + "zz", key):
        httpx.post(
            gw.openai_base_url + "/chat/completions",
            json={"model": "gpt-4o-mini", "messages": messages},
            headers={"authorization": f"Bearer {wrong}"},
        )
        httpx.get(gw.base_url + "/admin/keys", headers={"authorization": f"Bearer {wrong}"})
    gw.flush_ledger()


def test_no_key_or_prompt_in_logs(make_gateway, simulator, all_logs, faults, capfd):
    all_logs.excluded_threads.add(simulator._thread.name)
    gw = make_gateway()
    key = gw.create_key(team="logs", project="p")
    exercise(gw, key, faults)
    out, err = capfd.readouterr()
    logged = all_logs.text() + out + err
    assert all_logs.records, "nothing was captured: the capture itself is broken"
    assert key not in logged and key[3:] not in logged
    assert PROMPT_MARK not in logged
    assert "admin-secret" not in logged


def test_log_prompts_on_logs_prompts_but_never_keys(make_gateway, simulator, all_logs, faults, capfd):
    all_logs.excluded_threads.add(simulator._thread.name)
    gw = make_gateway(log_prompts=True)
    key = gw.create_key(team="logs", project="p")
    exercise(gw, key, faults)
    out, err = capfd.readouterr()
    logged = all_logs.text() + out + err
    assert PROMPT_MARK in logged
    assert key not in logged and key[3:] not in logged


def test_unexpected_errors_are_logged_without_their_messages(all_logs):
    """A 500's log keeps the exception types and frames but not messages that may quote a prompt."""
    from gateway.observability.logging import install, log_unexpected

    all_logs.excluded_threads.clear()  # logged right here, in the test's thread
    logger = logging.getLogger("gateway.test")
    for allowed in (False, True):
        all_logs.records.clear()
        install(allowed)
        try:
            try:
                raise KeyError(PROMPT_MARK)
            except KeyError as inner:
                raise ValueError(f"could not read {PROMPT_MARK}") from inner
        except ValueError as exc:
            log_unexpected(logger, "unhandled error on %s", "/v1/chat/completions", exc=exc)
        text = all_logs.text()
        assert "ValueError" in text and "KeyError" in text and "test_logs.py" in text
        assert (PROMPT_MARK in text) is allowed
    install(False)
