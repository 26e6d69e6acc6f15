"""Benchmark of ingest: parse + normalise + store, and a poll of unchanged feeds.

    python -m bench.ingest [--items 2000] [--feeds 100] [--corpus PATH]

Figures, on one thread:

* generated feed: a 2,000-item RSS 2.0 document shaped like the sample feed (guid, link,
  pubDate, a section category and tags, an HTML description with entities, an image)
  through `bot.pipeline.parse.parse_feed` and `storage.articles.store_articles` in one
  transaction into a fresh SQLite file (FTS5 triggers included): new articles/s, best of
  `--repeat` runs. Floor: `feedparser.parse` of the same document alone (the options the
  parse stage uses); target ≥ 0.7× its rate. Baseline: the naive way — `feedparser.parse` with its defaults
  (sanitising, resolving links), then for every entry a SELECT for its id, an INSERT and a
  COMMIT.
* feed corpus: every file of feedparser's test corpus (`tests/data/feed-corpus`, or
  NEWSBOT_FEED_CORPUS) the same way, one transaction per document; documents the parse
  stage rejects count their time but store nothing: documents/s, no target (the corpus
  averages 0.3 articles a document, so it measures the cost per document and that no document
  breaks parse or store). Same baseline (documents it crashes on are counted).
* 304 poll: 100 feeds on `tests.fakes.feed_server.FeedServer` (50 items each, ETag and
  Last-Modified), primed by a first `poll_due_feeds(services, all_feeds=True)`; then the
  same call again, when every answer is 304: seconds (median of `--repeat`). Baseline:
  unconditional GETs of the 100 feeds one after another, each parsed afresh with
  `feedparser.parse`.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import email.utils
import io
import os
import random
import re
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from bench.common import Row, bot_settings, figure, print_rows, remove_db, words

TARGET_FLOOR_FRACTION = 0.7  # × the rate of feedparser.parse alone on the same bodies
TARGET_POLL_S = 1.0
SECTION_NAMES = ("Sweden", "Living", "World", "Business", "Sports", "Entertainment")
FETCHED_AT = 1_760_000_000.0

WORDS = words(
    "the of to and a in for on that with as at by from police government election riksdag "
    "minister budget economy inflation riksbank housing prices energy electricity climate "
    "storm snow drone ukraine russia nato defence israel gaza china eu brussels norway "
    "denmark finland copenhagen oslo hospital health school university crime court prison "
    "fire train airport flights volvo ikea spotify ericsson saab northvolt klarna bank "
    "stocks market football hockey zlatan olympics skiing eurovision music film festival "
    "royal king queen migration asylum pension tax salary strike union jobs export trade "
    "research science wolf bears moose forest wildfire flood farmers food restaurant "
    "tourism summer winter christmas midsummer malmö göteborg umeå västerås örebro"
)
_HEADER_RE = re.compile(rb"^Header:\s*([A-Za-z-]+):\s*(.*?)\s*$", re.MULTILINE)


def corpus_dir() -> Path:
    override = os.environ.get("NEWSBOT_FEED_CORPUS")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1] / "tests" / "data" / "feed-corpus"


def declared_headers(body: bytes) -> dict[str, str]:
    """Corpus files that stand for HTTP responses name their headers in a leading comment."""
    return {
        name.decode("ascii"): value.decode("latin-1")
        for name, value in _HEADER_RE.findall(body[:4096])
    }


def make_feed(items: int, rng: random.Random, *, prefix: str = "sh", title: str = "Bench") -> bytes:
    """An RSS 2.0 document shaped like the sample feed (newest first)."""

    def words(n: int) -> str:
        return " ".join(rng.choices(WORDS, k=n))

    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">\n<channel>\n'
        f"<title>{escape(title)}</title>\n<link>https://news.example/</link>\n"
        "<description>Generated for benchmarks</description>\n<language>en</language>\n"
    ]
    for number in range(items, 0, -1):
        headline = words(rng.randint(6, 12)).capitalize()
        slug = re.sub(r"[^a-z0-9]+", "-", headline.lower()).strip("-")[:60]
        section = rng.choice(SECTION_NAMES)
        summary = (
            f"<p>{escape(words(rng.randint(15, 25)).capitalize())} &amp; "
            f"{escape(words(rng.randint(10, 20)))}.</p>"
            f'<p><img src="/img/{number}.jpg" alt=""> {escape(words(rng.randint(5, 15)))}.</p>'
        )
        date = email.utils.formatdate(FETCHED_AT - 3600 - number * 60, usegmt=True)
        tags = "".join(
            f"<category>{escape(t.capitalize())}</category>" for t in rng.sample(WORDS[9:], 3)
        )
        parts.append(
            f"<item>\n<title>{escape(headline)}</title>\n"
            f"<link>https://news.example/article/{prefix}-{number}-{slug}?utm_source=rss</link>\n"
            f'<guid isPermaLink="false">{prefix}-{number}</guid>\n<pubDate>{date}</pubDate>\n'
            f'<category domain="section">{section}</category>{tags}\n'
            f"<description>{escape(summary)}</description>\n"
            f'<media:content url="https://news.example/img/{prefix}-{number}.jpg" '
            'medium="image" width="1200" height="675"/>\n</item>\n'
        )
    parts.append("</channel>\n</rss>\n")
    return "".join(parts).encode("utf-8")


def _rule() -> Any:
    from storage.models import SectionRule

    return SectionRule(kind="category", domain="section", section="world")


def _sections() -> dict[str, str]:
    return {name.lower(): name for name in SECTION_NAMES}


async def _fresh_db(path: Path) -> Any:
    from storage.db import Database

    remove_db(path)
    return await Database.open(path)


# --------------------------------------------------------------------------- ours


async def ingest_ours(db: Any, documents: Sequence[tuple[str, bytes]]) -> tuple[int, int, int]:
    """parse_feed + store_articles in one transaction per document.

    Returns (articles parsed, articles new, documents rejected)."""
    from bot.pipeline.parse import ParseError, parse_feed
    from storage.articles import store_articles

    rule, sections = _rule(), _sections()
    parsed_n = new_n = rejected = 0
    for url, body in documents:
        try:
            parsed = parse_feed(
                body, url=url, rule=rule, fetched_at=FETCHED_AT,
                headers=declared_headers(body), sections=sections,
            )
        except ParseError:
            rejected += 1
            continue
        async with db.write() as conn:
            stored = await store_articles(conn, parsed.articles, now=time.time())
        parsed_n += len(parsed.articles)
        new_n += len(stored.new)
    return parsed_n, new_n, rejected


# --------------------------------------------------------------------------- naive


def _naive_fields(entry: Any) -> tuple[Any, ...] | None:
    article_id = entry.get("id") or entry.get("link") or entry.get("title")
    if not article_id:
        return None
    stamp = entry.get("published_parsed") or entry.get("updated_parsed")
    published = float(calendar.timegm(stamp)) if stamp else FETCHED_AT
    tags = "|".join(str(t.get("term") or "") for t in entry.get("tags") or [])
    return (
        str(article_id), str(entry.get("link") or ""), str(entry.get("title") or ""),
        str(entry.get("summary") or ""), tags, published, FETCHED_AT,
    )


async def ingest_naive(db: Any, documents: Sequence[tuple[str, bytes]]) -> tuple[int, int, int]:
    """feedparser.parse, then SELECT-exists + INSERT + COMMIT per entry.

    Returns (entries read, entries new, documents it failed on)."""
    import feedparser

    read = new = failed = 0
    for _url, body in documents:
        try:
            result = feedparser.parse(io.BytesIO(body), response_headers=declared_headers(body))
            for entry in result.entries:
                row = _naive_fields(entry)
                if row is None:
                    continue
                read += 1
                if await db.fetchone("SELECT 1 FROM articles WHERE id = ?", (row[0],)):
                    continue
                await db.execute(
                    "INSERT INTO articles (id, url, title, summary, tags, published_at, "
                    "fetched_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                new += 1
        except Exception:  # the naive loop has no parse stage to contain feedparser
            failed += 1
    return read, new, failed


# --------------------------------------------------------------------------- floor


def parse_only(documents: Sequence[tuple[str, bytes]], repeat: int) -> float:
    """The floor: `feedparser.parse` of the same bodies alone, with the options the parse
    stage gives it (no sanitising, no link resolving), best wall time of `repeat`."""
    import feedparser

    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _url, body in documents:
            try:
                feedparser.parse(
                    io.BytesIO(body), response_headers=declared_headers(body),
                    sanitize_html=False, resolve_relative_uris=False,
                )
            except Exception:  # the floor times the parse of whatever parses
                continue
        best = min(best, time.perf_counter() - started)
    return best


# --------------------------------------------------------------------------- runs


async def _timed_ingest(
    work: Path, documents: Sequence[tuple[str, bytes]], *, naive: bool, repeat: int
) -> tuple[float, tuple[int, int, int]]:
    """Best wall time over `repeat` runs, each into a fresh database."""
    best = float("inf")
    counts = (0, 0, 0)
    for attempt in range(repeat):
        db = await _fresh_db(work / f"ingest-{'naive' if naive else 'ours'}-{attempt}.db")
        try:
            started = time.perf_counter()
            counts = await (ingest_naive if naive else ingest_ours)(db, documents)
            best = min(best, time.perf_counter() - started)
        finally:
            await db.close()
            remove_db(db.path)
    return best, counts


def _feeds_toml(urls: Sequence[str]) -> str:
    body = "[sections]\n" + "".join(f'{n.lower()} = "{n}"\n' for n in SECTION_NAMES)
    for url in urls:
        body += (
            f'\n[[feeds]]\nurl = "{url}"\nsection_from = "category"\n'
            'category_domain = "section"\nsection = "world"\n'
        )
    return body


async def _conditional_gets(urls: Sequence[str], repeat: int) -> list[float]:
    """The floor of a poll that finds nothing new: the same conditional GETs (each feed's
    ETag and Last-Modified from a first GET) from one bare httpx client, as many at a time as
    the poller fetches, each answered 304. Seconds, `repeat` times."""
    import httpx

    from bot.pipeline.schedule import FETCH_CONCURRENCY

    slots = asyncio.Semaphore(FETCH_CONCURRENCY)
    async with httpx.AsyncClient() as client:
        validators = {}
        for url in urls:
            first = await client.get(url)
            validators[url] = {
                k: v for k, v in (("If-None-Match", first.headers.get("etag")),
                                  ("If-Modified-Since", first.headers.get("last-modified"))) if v
            }

        async def one(url: str) -> None:
            async with slots:
                answer = await client.get(url, headers=validators[url])
                if answer.status_code != 304:
                    raise RuntimeError(f"{url}: {answer.status_code}, not 304")

        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            await asyncio.gather(*(one(url) for url in urls))
            times.append(time.perf_counter() - started)
    return times


async def poll_304(work: Path, feeds: int, items: int, repeat: int, seed: int) -> dict[str, Any]:
    """Prime `feeds` feeds, then time polls answered 304, and the naive re-download."""
    import feedparser
    import httpx

    from bot.context import open_services
    from bot.stages.poll import poll_due_feeds
    from tests.fakes.feed_server import FeedServer

    rng = random.Random(seed)
    with FeedServer() as server:
        urls = []
        for number in range(feeds):
            path = f"/feeds/{number}.xml"
            server.serve(path, make_feed(items, rng, prefix=f"f{number}", title=f"Feed {number}"))
            urls.append(server.url_for(path))
        feeds_file = work / "feeds.toml"
        feeds_file.write_text(_feeds_toml(urls), encoding="utf-8")
        db_path = work / "poll.db"
        remove_db(db_path)
        settings = bot_settings(
            "http://127.0.0.1:9/bot", "1:unused", db_path, NEWSBOT_FEEDS=str(feeds_file)
        )
        services = await open_services(settings)
        try:
            started = time.perf_counter()
            first = await poll_due_feeds(services, all_feeds=True)
            prime_s = time.perf_counter() - started
            primed = sum(o.result == "primed" for o in first.outcomes)
            server.clear_requests()
            times: list[float] = []
            not_modified = 0
            for _ in range(repeat):
                started = time.perf_counter()
                summary = await poll_due_feeds(services, all_feeds=True)
                times.append(time.perf_counter() - started)
                not_modified = sum(o.result == "not_modified" for o in summary.outcomes)
            statuses = [r.status for r in server.requests()]
        finally:
            await services.close()

        floor_times = await _conditional_gets(urls, repeat)
        naive_times: list[float] = []
        entries = 0
        for _ in range(max(1, repeat // 2)):
            async with httpx.AsyncClient() as client:
                started = time.perf_counter()
                entries = 0
                for url in urls:
                    response = await client.get(url)
                    entries += len(feedparser.parse(io.BytesIO(response.content)).entries)
                naive_times.append(time.perf_counter() - started)
    return {
        "feeds": feeds,
        "prime_s": prime_s,
        "primed": primed,
        "poll_s": statistics.median(times),
        "poll_max_s": max(times),
        "polls": len(times),
        "not_modified": not_modified,
        "statuses_304": statuses.count(304),
        "requests": len(statuses),
        "floor_s": statistics.median(floor_times),
        "naive_s": statistics.median(naive_times),
        "naive_entries": entries,
    }


async def _bench(args: argparse.Namespace, work: Path) -> list[Row]:
    rng = random.Random(args.seed)
    generated = [("https://news.example/rss", make_feed(args.items, rng))]
    floor_s = parse_only(generated, args.repeat)
    ours_s, ours_counts = await _timed_ingest(work, generated, naive=False, repeat=args.repeat)
    floor_s = min(floor_s, parse_only(generated, args.repeat))
    naive_s, naive_counts = await _timed_ingest(work, generated, naive=True, repeat=1)
    print(f"generated feed: ours {ours_s:.2f} s, parse alone {floor_s:.2f} s, naive {naive_s:.2f} s", flush=True)

    root = Path(args.corpus) if args.corpus else corpus_dir()
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    if args.corpus_files:
        files = files[: args.corpus_files]
    corpus = [(f"http://corpus.example/{p.relative_to(root).as_posix()}", p.read_bytes())
              for p in files]
    rows: list[Row] = []
    ours_rate = ours_counts[1] / ours_s if ours_s else 0.0
    naive_rate = naive_counts[1] / naive_s if naive_s else 0.0
    floor_rate = args.items / floor_s if floor_s else 0.0
    rows.append(figure(
        "ingest_generated",
        f"ingest: generated {args.items:,}-item RSS feed, new articles/s",
        ours_rate, "articles/s", baseline=naive_rate,
        target=f"≥ {TARGET_FLOOR_FRACTION:g}× floor",
        passed=ours_rate >= TARGET_FLOOR_FRACTION * floor_rate and ours_counts[1] == args.items,
        floor=floor_rate, floor_text=f"parse alone {floor_rate:,.0f} articles/s",
        detail={
            "seconds": ours_s, "new": ours_counts[1], "parsed": ours_counts[0],
            "baseline_seconds": naive_s, "baseline_new": naive_counts[1], "floor_seconds": floor_s,
            "bytes": len(generated[0][1]),
            "note": (f"{ours_counts[1]:,} new articles in {ours_s:.2f} s (best of {args.repeat}): parse, "
                     f"normalise, store in one transaction; floor = feedparser.parse of the same document "
                     f"alone, {floor_s:.2f} s (best of {2 * args.repeat}, before and after); naive "
                     f"{naive_counts[1]:,} in {naive_s:.2f} s"),
        },
    ))
    if corpus:
        c_s, c_counts = await _timed_ingest(work, corpus, naive=False, repeat=1)
        cf_s = parse_only(corpus, 1)
        n_s, n_counts = await _timed_ingest(work, corpus, naive=True, repeat=1)
        print(f"corpus: ours {c_s:.2f} s, naive {n_s:.2f} s", flush=True)
        # The corpus averages 0.3 articles a document (many are not feeds, or feeds without
        # entries): documents/s is its figure, with no target; the generated feed is the
        # per-article one.
        c_rate = len(corpus) / c_s if c_s else 0.0
        n_rate = len(corpus) / n_s if n_s else 0.0
        rows.append(figure(
            "ingest_corpus",
            f"ingest: feed corpus ({len(corpus):,} documents), documents/s",
            c_rate, "documents/s", baseline=n_rate, passed=None,
            floor=len(corpus) / cf_s if cf_s else None,
            floor_text=f"parse alone {len(corpus) / cf_s:,.0f} documents/s" if cf_s else None,
            detail={
                "documents": len(corpus), "seconds": c_s, "parsed": c_counts[0],
                "new": c_counts[1], "rejected": c_counts[2], "baseline_seconds": n_s,
                "baseline_new": n_counts[1], "baseline_failed_documents": n_counts[2],
                "ms_per_document": 1000 * c_s / len(corpus),
                "note": (
                    f"{c_counts[1]:,} new of {c_counts[0]:,} parsed articles from "
                    f"{len(corpus):,} documents ({c_counts[2]} rejected) in {c_s:.1f} s = "
                    f"{1000 * c_s / len(corpus):.2f} ms/document "
                    f"({len(corpus) / c_s:,.0f} documents/s); naive read {n_counts[0]:,} "
                    f"entries ({n_counts[1]:,} new), {n_counts[2]} documents crashed it"
                ),
            },
        ))
    poll = await poll_304(work, args.feeds, args.feed_items, args.repeat, args.seed + 1)
    print(f"304 poll: {poll['poll_s']:.3f} s, naive {poll['naive_s']:.3f} s", flush=True)
    all_304 = poll["not_modified"] == args.feeds and poll["statuses_304"] == poll["requests"]
    rows.append(figure(
        "poll_304",
        f"poll of {args.feeds} unchanged feeds (all 304), seconds",
        poll["poll_s"], "s", baseline=poll["naive_s"], better="lower",
        target=f"< {TARGET_POLL_S:g} s", passed=poll["poll_s"] < TARGET_POLL_S and all_304,
        floor=poll["floor_s"], floor_text=f"bare conditional GETs {poll['floor_s']:.3f} s",
        detail={
            **poll,
            "note": (
                f"median of {poll['polls']} polls (max {poll['poll_max_s']:.3f} s), "
                f"{poll['statuses_304']}/{poll['requests']} answered 304; floor = the same "
                f"conditional GETs from one bare httpx client, as many at a time as the poller "
                f"fetches (median of {poll['polls']}); baseline = "
                f"{args.feeds} unconditional GETs in sequence + feedparser.parse "
                f"({args.feed_items} items each)"
            ),
        },
    ))
    return rows


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=2_000)
    parser.add_argument("--feeds", type=int, default=100)
    parser.add_argument("--feed-items", type=int, default=50, help="items per polled feed")
    parser.add_argument("--corpus", default="", help="feed corpus directory")
    parser.add_argument("--corpus-files", type=int, default=0, help="use only the first N (0: all)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20240603)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="newsbot-bench-ingest-") as tmp:
        rows = asyncio.run(_bench(args, Path(tmp)))
    print_rows(rows, "ingest")
    return rows


if __name__ == "__main__":
    main()
