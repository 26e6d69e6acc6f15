"""Every document in the shared feed corpus goes through the parse stage without a crash.

The corpus (feedparser's own test documents: ill-formed XML, odd encodings,
entity tricks, sanitiser cases, with their licence) lives in
`tests/data/feed-corpus/`; `NEWSBOT_FEED_CORPUS` points elsewhere. Its absence is a failure,
not a skip: a green run must mean the corpus was read.
"""

from __future__ import annotations

import io
import os
import re
import socket
import time
from pathlib import Path

import feedparser
import pytest

from bot.pipeline.parse import ParseError, parse_feed
from storage.models import SectionRule
from tests.conftest import CORPUS

FETCHED_AT = 1_741_867_200.0  # 2025-03-13T12:00:00Z
RULE = SectionRule(kind="category", section="world")


# Files that stand for HTTP responses name their headers in the leading comment
# ("Header: Content-Type: text/xml; charset=koi8-r").
_HEADER_RE = re.compile(rb"^Header:\s*([A-Za-z-]+):\s*(.*?)\s*$", re.MULTILINE)


def declared_headers(body: bytes) -> dict[str, str]:
    return {
        name.decode("ascii"): value.decode("latin-1")
        for name, value in _HEADER_RE.findall(body[:4096])
    }


def corpus_dir() -> Path:
    override = os.environ.get("NEWSBOT_FEED_CORPUS")
    return Path(override) if override else CORPUS


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Refuse and record every attempt to open a connection or resolve a name."""
    attempts: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(repr(args[:2]))
        raise OSError("network access during parsing")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_every_corpus_file_parses_or_raises_parse_error(no_network: list[str]) -> None:
    root = corpus_dir()
    if not root.is_dir():
        pytest.fail(
            f"feed corpus not found at {root}: expected tests/data/feed-corpus "
            "or a path in NEWSBOT_FEED_CORPUS"
        )
    files = sorted(p for p in root.rglob("*") if p.is_file())
    assert len(files) > 2000, f"feed corpus at {root} holds only {len(files)} files"

    with_articles = empty = rejected = total_articles = 0
    failures: list[str] = []
    started = time.perf_counter()
    for path in files:
        name = path.relative_to(root).as_posix()
        body = path.read_bytes()
        try:
            parsed = parse_feed(
                body,
                url=f"http://corpus.example/{name}",
                headers=declared_headers(body),
                rule=RULE,
                fetched_at=FETCHED_AT,
                feed_id=1,
            )
        except ParseError as exc:
            rejected += 1
            if not str(exc).startswith("parse: "):
                failures.append(f"{name}: ParseError without the stage prefix: {exc}")
            # Rejecting a document is only allowed when it holds no entries at all.
            entries = feedparser.parse(io.BytesIO(body)).entries
            if entries:
                failures.append(
                    f"{name}: ParseError although feedparser reads {len(entries)} entries"
                )
            continue
        except Exception as exc:  # the point of the test: report, keep going
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        if parsed.articles:
            with_articles += 1
            total_articles += len(parsed.articles)
        else:
            empty += 1
        for article in parsed.articles:
            if not article.id or not article.title or len(article.id) > 512:
                failures.append(f"{name}: bad article {article!r}")
            if article.published_at > FETCHED_AT + 600:
                failures.append(f"{name}: published_at in the future: {article.published_at}")
    elapsed = time.perf_counter() - started

    report = (
        f"{len(files)} files in {elapsed:.1f}s: {with_articles} gave {total_articles} articles, "
        f"{empty} were feeds without entries, {rejected} raised ParseError"
    )
    print(report)
    assert not no_network, f"network access while parsing: {no_network[:5]}"
    assert not failures, report + "\n" + "\n".join(failures[:50])
    assert with_articles > 500, report


async def test_every_corpus_article_is_stored(tmp_path: Path) -> None:
    """Parse → store into a real SQLite file: whatever the corpus holds, storage takes it."""
    from storage import articles
    from storage.db import Database

    root = corpus_dir()
    assert root.is_dir(), f"feed corpus not found at {root}"
    db = await Database.open(tmp_path / "corpus.db")
    parsed_total = stored = 0
    try:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            body = path.read_bytes()
            try:
                parsed = parse_feed(
                    body, url=f"http://corpus.example/{path.name}", rule=RULE,
                    fetched_at=FETCHED_AT, headers=declared_headers(body),
                )
            except ParseError:
                continue
            parsed_total += len(parsed.articles)
            async with db.write() as conn:
                stored += len(await articles.insert_new_articles(conn, parsed.articles))
        count = await articles.count_articles(db)
        # Searching what was stored works too (FTS5 index kept in sync by triggers).
        assert await db.scalar("SELECT count(*) FROM articles_fts") == count
    finally:
        await db.close()
    assert parsed_total > 500
    assert count == stored > 0
