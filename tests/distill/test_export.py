"""`gateway distill export`: samples captured through the gateway, written as OpenAI chat fine-tuning
JSONL and as a Hugging Face dataset folder (read back with the real `datasets`), deduplicated and
filtered by team, time, tier, feedback and shadow grade."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import datasets
import openai
import pytest
from sqlalchemy import create_engine, insert, update
from typer.testing import CliRunner

from gateway.cli import app as cli
from gateway.db.engine import sync_url
from gateway.db.models import DistillSample, Feedback, ShadowGrade
from gateway.distill.cli import parse_since
from tests.distill.conftest import capture_policy, install_policy, samples
from tests.distill.test_capture import WEATHER_TOOL

ROLES = {"system", "user", "assistant", "tool"}
KEYS = {
    "system": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "tool_calls"},
    "tool": {"role", "content", "tool_call_id"},
}


def check_openai_line(line: str) -> dict:
    """The chat fine-tuning format as OpenAI documents it (with function calling)."""
    record = json.loads(line)
    assert set(record) <= {"messages", "tools", "parallel_tool_calls"} and record["messages"]
    for message in record["messages"]:
        assert message["role"] in ROLES and set(message) <= KEYS[message["role"]], message
        if message["role"] == "assistant":
            assert isinstance(message.get("content"), str) or message.get("tool_calls")
            for call in message.get("tool_calls") or []:
                assert set(call) == {"id", "type", "function"} and call["type"] == "function"
                assert set(call["function"]) == {"name", "arguments"}
                json.loads(call["function"]["arguments"])
        elif message["role"] == "tool":
            assert message["tool_call_id"] and isinstance(message["content"], str)
        else:
            assert isinstance(message["content"], str)
    assert record["messages"][-1]["role"] == "assistant"
    for tool in record.get("tools") or []:
        assert tool["type"] == "function" and tool["function"]["name"]
    return record


@pytest.fixture
def captured(make_gateway, tmp_path):
    return populate(make_gateway(), tmp_path)


def populate(gw, tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Samples captured by a policy that keeps frontier and economy answers: one prompt asked twice
    (differing only in case and spacing), other teams and tiers, a tool call; feedback and grades."""
    install_policy(gw, capture_policy(tiers=["frontier", "economy"]), team="a")
    install_policy(gw, capture_policy(name="b-policy"), team="b")
    a = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(team="a"), max_retries=0)
    b = openai.OpenAI(base_url=gw.openai_base_url, api_key=gw.create_key(team="b"), max_retries=0)
    ids = {}
    for label, client, model, text in [
        ("dup1", a, "gpt-4o", "What is LoRA?"),
        ("dup2", a, "gpt-4o", "  what is   LoRA? "),
        ("economy", a, "gpt-4o-mini", "Summarise this for x@y.org"),
        ("b", b, "auto", "Explain vLLM"),
    ]:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": text}]
        )
        ids[label] = raw.headers["x-request-id"]
    raw = a.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "get_weather for Oslo"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    ids["tool"] = raw.headers["x-request-id"]
    assert len(samples(gw)) == 5
    engine = create_engine(sync_url(gw.settings.database_url))
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(Feedback),
            [
                {
                    "request_id": ids["dup2"],
                    "created_at": now,
                    "team": "a",
                    "submitted_by": "k",
                    "score": 1.0,
                },
                {
                    "request_id": ids["economy"],
                    "created_at": now,
                    "team": "a",
                    "submitted_by": "k",
                    "score": 0.0,
                },
                {
                    "request_id": ids["economy"],
                    "created_at": now,
                    "team": "a",
                    "submitted_by": "k",
                    "score": 0.5,
                },
                {"request_id": ids["b"], "created_at": now, "team": "b", "submitted_by": "k", "score": 0.75},
            ],
        )
        grade = {"created_at": now, "reference_deployment": "gpt-4o", "method": "judge", "passed": True}
        conn.execute(
            insert(ShadowGrade),
            [
                {**grade, "request_id": ids["economy"], "grade": 0.9},
                {**grade, "request_id": ids["b"], "grade": 0.4},
            ],
        )
        conn.execute(
            update(DistillSample)
            .where(DistillSample.id == ids["b"])
            .values(created_at=now - timedelta(days=10))
        )
    engine.dispose()
    config = tmp_path / "tiergate.yaml"
    config.write_text(f"database_url: {gw.settings.database_url}\n")
    return ids, config


def export(config: Path, output: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["distill", "export", "-c", str(config), "-o", str(output), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_openai_jsonl_is_deduplicated_and_in_the_documented_format(captured, tmp_path):
    _, config = captured
    output = tmp_path / "train.jsonl"
    printed = export(config, output, "--format", "openai")
    assert "wrote 4 samples" in printed and "1 duplicate prompts skipped" in printed
    records = [check_openai_line(line) for line in output.read_text().splitlines()]
    prompts = sorted(r["messages"][0]["content"] for r in records)
    # of the two LoRA questions, the one with feedback is kept; the email was redacted at capture
    assert prompts == [
        "  what is   LoRA? ",
        "Explain vLLM",
        "Summarise this for [EMAIL]",
        "get_weather for Oslo",
    ]
    (tool_record,) = [r for r in records if "tools" in r]
    assert tool_record["tools"] == [WEATHER_TOOL]
    assert tool_record["messages"][-1]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_hf_folder_loads_with_datasets(captured, tmp_path):
    ids, config = captured
    output = tmp_path / "hf"
    export(config, output, "--format", "hf")
    dataset = datasets.load_from_disk(str(output))
    assert len(dataset) == 4
    rows = {row["id"]: row for row in dataset}
    assert set(rows) == {ids["dup2"], ids["economy"], ids["b"], ids["tool"]}
    economy = rows[ids["economy"]]
    assert (economy["team"], economy["tier"], economy["deployment"]) == ("a", "economy", "gpt-4o-mini")
    assert economy["feedback"] == pytest.approx(0.25) and economy["shadow_grade"] == pytest.approx(0.9)
    assert [m["role"] for m in economy["messages"]] == ["user", "assistant"]
    assert economy["messages"][0]["content"] == "Summarise this for [EMAIL]"
    assert datetime.fromisoformat(economy["created_at"]).utcoffset() == timedelta(0)
    tool = rows[ids["tool"]]
    assert json.loads(tool["tools"]) == [WEATHER_TOOL]
    assert tool["messages"][-1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert rows[ids["b"]]["shadow_grade"] == pytest.approx(0.4) and rows[ids["dup2"]]["shadow_grade"] is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--team", "a"], {"dup2", "economy", "tool"}),
        (["--since", "7d"], {"dup2", "economy", "tool"}),
        (["--tier", "economy"], {"economy"}),
        (["--tier", "economy", "--tier", "frontier"], {"dup2", "economy", "b", "tool"}),
        (["--min-feedback", "0.7"], {"dup2", "b"}),
        (["--min-shadow-grade", "0.5"], {"economy"}),
        (["--min-feedback", "0.2", "--min-shadow-grade", "0.3", "--team", "b"], {"b"}),
    ],
)
def test_filters(captured, tmp_path, args, expected):
    ids, config = captured
    output = tmp_path / "hf"
    export(config, output, "--format", "hf", *args)
    assert {row["id"] for row in datasets.load_from_disk(str(output))} == {ids[label] for label in expected}


def test_empty_export_and_bad_arguments(captured, tmp_path):
    _, config = captured
    output = tmp_path / "none"
    runner = CliRunner()
    empty = runner.invoke(
        cli, ["distill", "export", "-c", str(config), "-o", str(output), "--team", "nobody"]
    )
    assert empty.exit_code == 1 and "no samples match" in empty.output and not output.exists()
    bad = runner.invoke(cli, ["distill", "export", "-c", str(config), "-o", str(output), "--format", "csv"])
    assert bad.exit_code != 0
    bad = runner.invoke(
        cli, ["distill", "export", "-c", str(config), "-o", str(output), "--since", "yesterday"]
    )
    assert bad.exit_code != 0


@pytest.mark.postgres
def test_export_from_postgres(make_gateway, postgres_url, tmp_path):
    _, config = populate(make_gateway(database_url=postgres_url), tmp_path)
    output = tmp_path / "pg.jsonl"
    export(config, output, "--min-feedback", "0.2", "--since", "30d")
    records = [check_openai_line(line) for line in output.read_text().splitlines()]
    assert sorted(r["messages"][0]["content"] for r in records) == [
        "  what is   LoRA? ",
        "Explain vLLM",
        "Summarise this for [EMAIL]",
    ]


def test_since_accepts_dates_offsets_and_look_backs():
    assert parse_since("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_since("2026-11-01T12:00:00+02:00") == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert abs(parse_since("12h") - (datetime.now(UTC) - timedelta(hours=12))) < timedelta(seconds=5)
    assert parse_since(None) is None


def test_purge_by_age_and_team(captured, tmp_path):
    _, config = captured
    runner = CliRunner()
    purged = runner.invoke(cli, ["distill", "purge", "-c", str(config), "--before", "7d"])
    assert purged.exit_code == 0 and "deleted 1 samples" in purged.output  # team b's, 10 days old
    purged = runner.invoke(cli, ["distill", "purge", "-c", str(config), "--before", "1h", "--team", "nobody"])
    assert "deleted 0 samples" in purged.output
    output = tmp_path / "left.jsonl"
    export(config, output)
    assert len(output.read_text().splitlines()) == 3  # dup2, economy, tool
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    purged = runner.invoke(cli, ["distill", "purge", "-c", str(config), "--before", future, "--team", "a"])
    assert "deleted 4 samples" in purged.output  # both LoRA questions, economy, tool
