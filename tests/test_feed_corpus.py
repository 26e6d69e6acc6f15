"""Every document in the shared feed corpus goes through the poller's path without a crash.

The corpus (feedparser's own test documents: ill-formed XML, odd encodings,
entity tricks, sanitiser cases, with their licence) lives in
`tests/data/feed-corpus/`; `NEWSBOT_FEED_CORPUS` points elsewhere. Its absence is a failure,
not a skip: a green run must mean the corpus was read.

Each document is handed to `bot.stages.poll.store_document` as the fetch stage would
hand it over (a `FetchResult` with the headers the file declares), for a primed feed with a
reader following its section, on a real SQLite file: parse, store, match and enqueue.
"""

from __future__ import annotations

import io
import os
import re
import socket
import time
import xml.sax
from pathlib import Path

import feedparser
import pytest

from bot.config import load_settings
from bot.context import Services, open_services
from bot.pipeline.fetch import FetchResult
from bot.pipeline.parse import ParseError
from bot.stages.poll import poll_feed, store_document
from storage import articles, chats, feeds, subscriptions
from storage.models import Feed, SectionRule
from tests.conftest import CORPUS, SAMPLE_FEED
from tests.fakes.feed_server import FeedServer

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


# What expat says when a document stops before its elements are closed.
_CUT_SHORT = ("no element found", "unclosed token")


def cut_short(body: bytes) -> bool:
    """Whether the XML parser (as feedparser runs it) ran out of document at its very end."""
    exc = feedparser.parse(io.BytesIO(body)).get("bozo_exception")
    if not isinstance(exc, xml.sax.SAXParseException) or exc.getMessage() not in _CUT_SHORT:
        return False
    return exc.getLineNumber() >= body.rstrip().count(b"\n") + 1


def fetched(url: str, body: bytes) -> FetchResult:
    return FetchResult(
        url=url, status=200, not_modified=False, body=body,
        headers={k.lower(): v for k, v in declared_headers(body).items()}, etag=None,
        last_modified=None, elapsed=0.01, store_url=url,
    )


async def corpus_newsroom(tmp_path: Path, urls: list[str]) -> tuple[Services, dict[str, Feed]]:
    """Services on a fresh database: one primed feed per document, a reader of 'world'."""
    feeds_file = tmp_path / "feeds.toml"
    feeds_file.write_text('[sections]\nworld = "World"\n')
    settings = load_settings(
        {"NEWSBOT_DB": str(tmp_path / "corpus.db"), "NEWSBOT_FEEDS": str(feeds_file),
         "NEWSBOT_FEED_ALLOW_PRIVATE": "1"},
        env_file=None,
    )  # fmt: skip
    services = await open_services(settings)
    await feeds.seed_feeds(services.db, [(url, RULE) for url in urls], now=time.time())
    async with services.db.write() as conn:
        for feed in await feeds.list_feeds(services.db):
            await feeds.record_success(
                conn, feed.id, now=FETCHED_AT, next_poll_at=FETCHED_AT, etag=None,
                last_modified=None, title=None, primed=True,
            )
    await chats.join(services.db, 42, "private", now=time.time())
    added = await subscriptions.add_subscription(services.db, 42, "section", "world", "World", limit=5, now=time.time())
    assert added.subscription is not None
    services.matcher.add(added.subscription)
    return services, {f.url: f for f in await feeds.list_feeds(services.db)}


async def test_every_corpus_document_goes_through_the_pollers_path(
    no_network: list[str], tmp_path: Path
) -> None:
    """No exception but ParseError escapes; a ParseError only for a document without
    entries or one the XML parser says is cut short; messages say "parse: " once."""
    root = corpus_dir()
    if not root.is_dir():
        pytest.fail(
            f"feed corpus not found at {root}: expected tests/data/feed-corpus "
            "or a path in NEWSBOT_FEED_CORPUS"
        )
    files = sorted(p for p in root.rglob("*") if p.is_file())
    assert len(files) > 2000, f"feed corpus at {root} holds only {len(files)} files"
    names = [p.relative_to(root).as_posix() for p in files]
    services, by_url = await corpus_newsroom(tmp_path, [f"http://corpus.example/{n}" for n in names])

    with_articles = empty = rejected = total_new = queued = 0
    failures: list[str] = []
    started = time.perf_counter()
    try:
        for path, name in zip(files, names, strict=True):
            body = path.read_bytes()
            url = f"http://corpus.example/{name}"
            try:
                outcome = await store_document(
                    services, by_url[url], fetched(url, body), now=FETCHED_AT
                )
            except ParseError as exc:
                rejected += 1
                message = str(exc)
                if not message.startswith("parse: ") or message.count("parse: ") != 1:
                    failures.append(f"{name}: ParseError message {message!r}")
                entries = feedparser.parse(io.BytesIO(body)).entries
                if entries and not cut_short(body):
                    failures.append(
                        f"{name}: ParseError although feedparser reads {len(entries)} entries "
                        f"and the document is whole: {message}"
                    )
                continue
            except Exception as exc:  # the point of the test: report, keep going
                failures.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            total_new += len(outcome.new)
            queued += outcome.queued
            if outcome.items:
                with_articles += 1
            else:
                empty += 1
            for article in outcome.new:
                if not article.id or not article.title or len(article.id) > 512:
                    failures.append(f"{name}: bad article {article!r}")
                if article.published_at > FETCHED_AT + 600:
                    failures.append(f"{name}: published_at in the future: {article.published_at}")
        elapsed = time.perf_counter() - started
        count = await articles.count_articles(services.db)
        indexed = await services.db.scalar("SELECT count(*) FROM articles_fts")
        outbox_rows = await services.db.scalar("SELECT count(*) FROM outbox WHERE chat_id = 42")
        unmatched = await articles.unmatched_articles(services.db)
    finally:
        await services.close()

    report = (
        f"{len(files)} files in {elapsed:.1f}s: {with_articles} gave articles ({total_new} new), "
        f"{empty} were feeds without entries, {rejected} raised ParseError, {queued} alerts queued"
    )
    print(report)
    assert not no_network, f"network access while parsing: {no_network[:5]}"
    assert not failures, report + "\n" + "\n".join(failures[:50])
    assert with_articles > 500, report
    # Everything new was stored, indexed and matched (the corpus repeats its example ids,
    # links and titles a lot: those are one story); undated stories (dated "now") alerted.
    assert count == indexed == total_new > 50
    assert unmatched == []
    assert outbox_rows == queued > 0


async def test_rss_1_0_without_a_default_namespace_is_accepted(tmp_path: Path) -> None:
    """RSS 1.0 whose elements all carry a prefix (no default namespace) is a feed."""
    name = "wellformed/namespace/rss1.0withModulesNoDefNS.xml"
    url = f"http://corpus.example/{name}"
    services, by_url = await corpus_newsroom(tmp_path, [url])
    try:
        outcome = await store_document(
            services, by_url[url], fetched(url, (corpus_dir() / "feedparser" / name).read_bytes()),
            now=FETCHED_AT,
        )
    finally:
        await services.close()
    assert [a.title for a in outcome.new] == ["Test Item - RSS 1.0 no Default NS"]


FEEDBURNER = "http://rssnamespace.org/feedburner/ext/1.0"


@pytest.mark.parametrize("declared", [True, False])
async def test_feedburner_orig_link_is_accepted(tmp_path: Path, declared: bool) -> None:
    """Feeds run through FeedBurner carry <feedburner:origLink> (the namespace sometimes
    undeclared): their stories are stored like any other."""
    namespace = f' xmlns:feedburner="{FEEDBURNER}"' if declared else ""
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"{namespace}><channel>'
        "<title>Herald</title><item><title>Storm closes the bridge</title>"
        "<link>http://feeds.feedburner.com/~r/herald/~3/abc/</link>"
        '<guid isPermaLink="false">tag:herald,2025:1</guid>'
        "<feedburner:origLink>https://news.example/storm</feedburner:origLink>"
        "</item></channel></rss>"
    ).encode()
    url = "http://corpus.example/feedburner.xml"
    services, by_url = await corpus_newsroom(tmp_path, [url])
    try:
        outcome = await store_document(services, by_url[url], fetched(url, body), now=FETCHED_AT)
    finally:
        await services.close()
    assert [a.title for a in outcome.new] == ["Storm closes the bridge"]


async def test_a_story_dated_ahead_is_stored_but_not_alerted(tmp_path: Path) -> None:
    """A story dated a day after the fetch is kept (at the fetch time) and alerts nobody;
    its neighbour dated now alerts the reader of its section."""
    ahead = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(FETCHED_AT + 86400))
    now = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(FETCHED_AT - 60))
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Herald</title>'
        f"<item><title>Tomorrow's story</title><guid>ahead</guid><pubDate>{ahead}</pubDate></item>"
        f"<item><title>Today's story</title><guid>today</guid><pubDate>{now}</pubDate></item>"
        "</channel></rss>"
    ).encode()
    url = "http://corpus.example/dated.xml"
    services, by_url = await corpus_newsroom(tmp_path, [url])
    try:
        outcome = await store_document(services, by_url[url], fetched(url, body), now=FETCHED_AT)
        stored = await articles.get_article(services.db, "ahead")
        rows = await services.db.fetchall("SELECT article_id FROM outbox WHERE chat_id = 42")
    finally:
        await services.close()
    assert sorted(a.id for a in outcome.new) == ["ahead", "today"]
    assert outcome.not_alerted == 1
    assert stored is not None and stored.published_at == FETCHED_AT
    assert [r[0] for r in rows] == ["today"]


async def test_a_feed_cut_short_in_transit_is_recorded_as_one_parse_error(tmp_path: Path) -> None:
    """The sample feed served cut in the middle: the poll fails with the parser's reason,
    said once, and stores nothing."""
    with FeedServer() as server:
        server.truncated("/rss", SAMPLE_FEED.read_bytes(), mode="document")
        url = server.url_for("/rss")
        services, by_url = await corpus_newsroom(tmp_path, [url])
        try:
            outcome = await poll_feed(services, by_url[url])
            feed = await feeds.get_feed(services.db, by_url[url].id)
            count = await articles.count_articles(services.db)
        finally:
            await services.close()
    assert outcome.result == "error" and outcome.error is not None
    assert outcome.error.startswith("parse: document cut short")
    assert feed is not None and feed.last_error == outcome.error and feed.error_count == 1
    assert outcome.error.count("parse:") == 1
    assert count == 0
