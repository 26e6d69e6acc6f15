"""Every benchmark runs end to end at a tiny size and reports the figures it promises.

No timing is asserted (the machine is shared): only that the rows are there and that the
counts that must hold at any speed do (nothing lost, every poll answered 304, …).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import __main__ as runner
from bench import year
from bench.common import Row


@pytest.fixture(autouse=True)
def bench_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Generated databases go to the test's directory, not the shared cache."""
    cache = tmp_path / "bench-cache"
    monkeypatch.setenv("NEWSBOT_BENCH_CACHE", str(cache))
    return cache


def by_key(rows: list[Row]) -> dict[str, Row]:
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)), keys
    for row in rows:
        assert set(row) >= {"figure", "value", "baseline", "ratio", "target", "passed", "detail"}
    return {r["key"]: r for r in rows}


def smoke(name: str) -> list[Row]:
    return runner.run_in_process(name, runner.SMOKE_ARGS[name])


def test_deliver_smoke() -> None:
    rows = by_key(smoke("deliver"))
    assert set(rows) == {"deliver_rate", "deliver_violations", "deliver_lost", "deliver_overhead"}
    ours: dict[str, Any] = rows["deliver_rate"]["detail"]["ours"]
    assert ours["queued"] == 24
    assert ours["accepted"] == 24
    assert ours["outbox_states"] == {"sent": 24}
    assert rows["deliver_lost"]["value"] == 0
    assert ours["duplicates"] == 0
    assert rows["deliver_rate"]["value"] > 0
    fast: dict[str, Any] = rows["deliver_overhead"]["detail"]["ours"]
    assert fast["queued"] == fast["accepted"] == 30
    assert fast["lost"] == fast["duplicates"] == 0
    assert fast["violations"] == 0  # the fake enforces nothing in this run
    bare: dict[str, Any] = rows["deliver_overhead"]["detail"]["baseline"]
    assert bare["accepted"] == 30
    floor: dict[str, Any] = rows["deliver_overhead"]["detail"]["floor"]
    assert floor["accepted"] == 30 and floor["duplicates"] == 0  # the bare httpx loop sent each once
    assert rows["deliver_overhead"]["floor"] > 0


def test_ingest_smoke() -> None:
    rows = by_key(smoke("ingest"))
    assert set(rows) == {"ingest_generated", "ingest_corpus", "poll_304"}
    generated = rows["ingest_generated"]["detail"]
    assert generated["new"] == generated["baseline_new"] == 60
    assert generated["floor_seconds"] > 0 and rows["ingest_generated"]["floor"] > 0
    corpus = rows["ingest_corpus"]["detail"]
    assert corpus["documents"] == 40
    assert corpus["parsed"] >= corpus["new"] > 0
    poll = rows["poll_304"]["detail"]
    assert poll["primed"] == poll["feeds"] == 5
    assert poll["not_modified"] == 5
    assert poll["statuses_304"] == poll["requests"] == 5
    assert poll["naive_entries"] == 5 * 5
    assert poll["floor_s"] > 0


def test_queries_smoke(bench_cache: Path) -> None:
    rows = by_key(smoke("queries"))
    assert set(rows) == {"query_latest", "query_search", "query_related"}
    for row in rows.values():
        detail = row["detail"]
        assert detail["queries"] == 30
        assert detail["baseline_queries"] == 2
        assert 0 < detail["p50_ms"] <= detail["p99_ms"]
        assert detail["non_empty_of_20"] > 0
        # The floor statement returned the bot's answer, query by query.
        assert detail["floor_same_ids"] == 30
        assert 0 < detail["floor_p50_ms"] <= detail["floor_p99_ms"] == row["floor"]
    assert rows["query_latest"]["detail"]["non_empty_of_20"] == 20
    cached = list(bench_cache.glob("queries-3000-*.db"))
    assert len(cached) == 1
    # A second run reuses the generated file.
    again = by_key(smoke("queries"))
    assert again["query_latest"]["detail"]["generate_seconds"] is None


def test_related_smoke() -> None:
    rows = by_key(smoke("related"))
    assert set(rows) == {"related_precision"}
    row = rows["related_precision"]
    assert row["detail"]["stories"] == 40 and row["detail"]["stored"] == 50
    # Both rankings measured in the same run, on the same judged set.
    assert 0 < row["baseline"] < row["value"] <= 1
    assert row["passed"] is True


def test_memory_smoke() -> None:
    rows = by_key(smoke("memory"))
    assert set(rows) == {"memory_bot", "memory_index"}
    detail = rows["memory_bot"]["detail"]
    assert detail["chats"] == 300
    assert detail["subscriptions"] == 1500
    assert detail["naive"]["objects"] == 1500
    assert detail["bot"]["rss_mb"] > 0 and detail["idle_bot"]["rss_mb"] > 0
    assert detail["bot"]["exit_code"] == 0


def test_match_rows_adapter() -> None:
    rows = by_key(smoke("match"))
    assert set(rows) == {
        "match_rate", "match_materialised", "match_index_memory", "match_verified",
        "match_exclusions",
    }  # fmt: skip
    assert rows["match_verified"]["passed"] is True
    assert rows["match_rate"]["value"] > 0
    figures = rows["match_rate"]["detail"]
    assert figures["keyword_subscriptions"] == 3000
    assert figures["floor_articles_per_second"] > 0 and figures["floor_multiple"] > 0
    assert figures["exclusions"] == 600
    assert figures["exclusions_verified_ok"] is True
    # The exclusions took effect: some chats lost an alert they would have had.
    assert figures["excluded_chats_per_article"] > 0
    assert rows["match_exclusions"]["value"] > 0


def test_newsday_smoke() -> None:
    rows = by_key(smoke("newsday"))
    assert set(rows) == {
        "newsday_keyword", "newsday_section", "newsday_broadcast_free",
        "newsday_broadcast_paid", "newsday_messages_per_alert", "newsday_clean",
    }  # fmt: skip
    assert rows["newsday_clean"]["value"] == 0
    assert rows["newsday_clean"]["passed"] is True
    for key in ("newsday_keyword", "newsday_section"):
        assert rows[key]["value"] > 0 and rows[key]["baseline"] > 0
    # Both broadcasts reached their audience, in the run with lanes and under FIFO.
    for key in ("newsday_broadcast_free", "newsday_broadcast_paid"):
        assert rows[key]["value"] > 0 and rows[key]["baseline"] > 0
    assert 0 < rows["newsday_messages_per_alert"]["value"] <= 1


def test_year_smoke() -> None:
    rows = by_key(smoke("year"))
    assert {"year_query_/stats", "year_healthz", "year_dispatcher", "year_enqueue", "year_told"} <= set(rows)
    assert any(key.startswith("year_size_day") for key in rows)
    assert any(key.startswith("year_query_") for key in rows)
    for key, row in rows.items():
        assert row["value"] > 0
        if key != "year_told":  # 0.1 kept no such memory
            assert row["baseline"] is not None  # each beside 0.1's figure or the empty database
        if key.startswith("year_query_") or key in ("year_healthz", "year_dispatcher", "year_enqueue"):
            assert row["floor"] is not None and row["floor"] > 0  # day 7's, or the executemany's
    told = rows["year_told"]["detail"]
    assert told["note"]


def test_storm_smoke() -> None:
    rows = by_key(smoke("storm"))
    assert set(rows) == {"storm_delay", "storm_edits", "storm_clean", "storm_correction_cost"}
    clean = rows["storm_clean"]
    assert clean["value"] == 0 and clean["passed"] is True  # nothing lost or doubled, no violation
    assert rows["storm_edits"]["passed"] is True  # never two edits of a message within the interval
    assert rows["storm_edits"]["value"] >= 1  # every message of the story was edited
    delay = rows["storm_delay"]
    assert delay["value"] > 0 and delay["baseline"] > 0 and delay["floor"] == delay["baseline"]


def test_briefing_smoke() -> None:
    rows = by_key(smoke("briefing"))
    assert set(rows) == {"briefing_spread", "briefing_keyword"}
    spread = rows["briefing_spread"]
    assert spread["passed"] is True  # every briefing sent, no violation
    assert spread["baseline"] is not None
    assert rows["briefing_keyword"]["value"] > 0


def test_runner_prints_one_table_and_writes_docs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "benchmarks.md"
    out = tmp_path / "rows.json"
    rows = runner.main(
        ["--smoke", "--only", "ingest,queries", "--write-docs", "--docs", str(docs),
         "--json", str(out), "--record", str(tmp_path / "run.json")]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "| figure | value | baseline | ratio | floor | × floor | target | result |" in printed
    assert "host speed: CPU calibration" in printed
    keys = [r["key"] for r in rows]
    assert keys == [
        "ingest_generated", "ingest_corpus", "poll_304",
        "query_latest", "query_search", "query_related",
    ]  # fmt: skip
    assert [r["key"] for r in json.loads(out.read_text())] == keys
    text = docs.read_text()
    assert "| figure | value | baseline | ratio | floor | × floor | target | result |" in text
    assert "**Host speed**: CPU calibration" in text
    assert "Smoke sizes" in text
    assert "## How to run" in text
    assert "| /search at 1,000,000 stories, p99 | 46.91 ms |" in text  # before and after
    for key in ("cores", "Python", "SQLite"):
        assert key in text
    again = tmp_path / "again.md"
    assert runner.main(["--docs-from", str(tmp_path / "run.json"), "--docs", str(again)]) == rows
    assert again.read_text() == text  # the same run, written again without running it


def test_runner_reports_a_crashed_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(runner.SMOKE_ARGS, "ingest", ["--no-such-option"])
    rows = runner.main(["--smoke", "--only", "ingest"])
    assert [r["key"] for r in rows] == ["ingest_crashed"]
    assert rows[0]["passed"] is False


def test_year_without_v01_says_its_baselines_were_not_run() -> None:
    rows = by_key(year.main([*runner.SMOKE_ARGS["year"], "--without-v01"]))
    assert rows["year_dispatcher"]["baseline"] is not None  # the empty database, this run
    for key, row in rows.items():
        assert row["value"] > 0
        if key != "year_dispatcher":
            assert row["baseline"] is None and row["baseline_text"] == year.NOT_RUN
