"""The match benchmark runs end to end at a tiny size and its figures add up."""

from __future__ import annotations

import pytest

from bench.match import main


def test_bench_match_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    figures = main(
        [
            "--keywords", "3000",
            "--chats", "300",
            "--articles", "60",
            "--warmup", "10",
            "--vocabulary", "3000",
            "--baseline-subscriptions", "300",
            "--baseline-articles", "3",
            "--verify", "10",
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "| figure | value | baseline | ratio | target | result |" in printed
    assert "articles/s" in printed

    assert figures["keyword_subscriptions"] == 3000
    assert figures["section_subscriptions"] == 300
    assert figures["chats"] == 300
    assert figures["silenced_chats"] == 6
    assert 0 < figures["phrase_subscriptions"] < 3000
    assert figures["articles"] == 60
    assert figures["verified_articles"] == 10
    assert figures["verified_ok"] is True

    assert 0 < figures["matched_articles"] <= figures["articles"]
    assert figures["matched_pairs"] == figures["counted_pairs"]
    assert figures["matched_pairs"] >= figures["matched_articles"]
    assert figures["keyword_pairs"] >= figures["keyword_reasons"] > 0
    assert figures["alerts_per_article"] == figures["matched_pairs"] / figures["articles"]

    for name in (
        "articles_per_second",
        "wall_articles_per_second",
        "materialised_articles_per_second",
        "baseline_articles_per_second",
        "ratio",
        "index_bytes",
        "build_seconds",
    ):
        assert figures[name] > 0, name
    assert figures["baseline_sample_subscriptions"] == 300
    assert figures["baseline_sample_articles"] == 3
    assert isinstance(figures["passed"], bool)
