"""Every kind of source: JSON Feed, news sitemaps (indexes, gzip), HTML listing pages (by a
selector, by <article> markup, by links to stories) and article pages' metadata — read on
their own, then end to end: a running bot polls each kind from the loopback feed server on
simulated time and a reader gets each new story once, in the right section; the bounds hold
and are logged; a listing page whose markup changed says so in /feeds."""

from __future__ import annotations

import gzip
import json
import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.config import ConfigError, parse_feeds_config
from bot.pipeline.discover import sniff
from bot.pipeline.fetch import FetchResult
from bot.pipeline.listing import MAX_LINKS, MAX_STORIES, read_listing
from bot.pipeline.pagemeta import read_page_meta
from bot.pipeline.parse import ParseError
from bot.pipeline.sitemap import KEEP, MAX_ENTRIES, NotASitemap, gunzip, read_sitemap
from bot.pipeline.sources import read_document
from bot.pipeline.transport import make_client
from storage.models import SectionRule
from tests.fakes.feed_server import FeedServer
from tests.fakes.telegram_api import FakeTelegram
from tests.harness import SECTIONS_TOML, ask, bot_settings, running_bot
from tests.simtime import SimClock

READER = 100
ADMIN = 9001
RULE = SectionRule(kind="category", section="world")
SECTIONS = {"world": "World", "sports": "Sports", "sweden": "Sweden"}
NEWS = "http://www.google.com/schemas/sitemap-news/0.9"


def iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def json_feed(stories: list[tuple[int, float]], *, hub: str | None = None) -> bytes:
    data: dict[str, Any] = {
        "version": "https://jsonfeed.org/version/1.1", "title": "Wire JSON",
        "items": [{"id": f"j-{n}", "url": f"https://wire.example/json/{n}", "title": f"JSON story {n}",
                   "content_text": f"Body {n}", "date_published": iso(at), "tags": ["Sports"]} for n, at in stories],
    }
    if hub:
        data["hubs"] = [{"type": "WebSub", "url": hub}]
    return json.dumps(data).encode()


def news_sitemap(stories: list[tuple[int, float]], *, plain: int = 0) -> bytes:
    urls = "".join(
        f"<url><loc>https://wire.example/world/map-story-{n}</loc><news:news><news:publication><news:name>W</news:name>"
        f"<news:language>en</news:language></news:publication><news:publication_date>{iso(at)}</news:publication_date>"
        f"<news:title>Map story {n}</news:title></news:news></url>"
        for n, at in stories
    ) + "".join(f"<url><loc>https://wire.example/page/{n}</loc></url>" for n in range(plain))
    return (f'<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
            f'xmlns:news="{NEWS}">{urls}</urlset>').encode()


def sitemap_index(urls: list[str], day: int = 1) -> bytes:
    items = "".join(f"<sitemap><loc>{u}</loc><lastmod>2026-01-{day:02d}T00:00:{i:02d}Z</lastmod></sitemap>"
                    for i, u in enumerate(urls))
    return f'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{items}</sitemapindex>'.encode()


def section_page(stories: list[int], *, markup: str = "card") -> bytes:
    if markup == "card":
        body = "".join(f'<div class="card"><h3><a href="/sports/card-story-{n}">Card story {n}</a></h3>'
                       f"<p>Summary of card story {n}.</p></div>" for n in stories)
    else:  # a redesign: the class is gone
        body = "".join(f'<section class="tile"><a href="/sports/card-story-{n}">Card story {n}</a></section>'
                       for n in stories)
    return (f'<!DOCTYPE html><html><head><title>Sports</title></head><body><nav><a href="/about-us-and-the-team">'
            f"About us and the team</a></nav>{body}</body></html>").encode()


def front_page(stories: list[int]) -> bytes:
    links = "".join(f'<li><a href="/world/front-page-story-{n}">Front page story number {n}</a></li>' for n in stories)
    return f"<!DOCTYPE html><html><head><title>Wire</title></head><body><ul>{links}</ul></body></html>".encode()


def article_page(n: int, published: float, section: str = "World") -> bytes:
    ld = json.dumps({"@context": "https://schema.org", "@type": "NewsArticle", "headline": f"Front page story number {n}",
                     "datePublished": iso(published), "articleSection": section})
    return (f'<!DOCTYPE html><html><head><meta property="og:title" content="Front page story number {n}">'
            f'<meta property="og:description" content="What happened in story {n}.">'
            f'<script type="application/ld+json">{ld}</script></head><body><p>Text</p></body></html>').encode()


def fetched(body: bytes, url: str = "https://wire.example/x", content_type: str = "") -> FetchResult:
    return FetchResult(url=url, status=200, not_modified=False, body=body,
                       headers={"content-type": content_type} if content_type else {},
                       etag=None, last_modified=None, elapsed=0.0, store_url=url)


# --- reading each kind ----------------------------------------------------------------------


def test_sniff_tells_the_kinds_apart_by_their_bodies() -> None:
    assert sniff(json_feed([(1, 0)]), "text/plain") == "json"
    assert sniff(b"\xef\xbb\xbf" + news_sitemap([(1, 0)]), "text/html") == "sitemap"
    assert sniff(sitemap_index(["https://x/s.xml"])) == "sitemap"
    assert sniff(section_page([1]), "application/xml") == "html"
    assert sniff(b'<?xml version="1.0"?><rss version="2.0"><channel/></rss>', "text/html") == "rss"


async def test_json_feed_items_become_stories_with_sections_dates_and_hubs() -> None:
    async with make_client() as client:
        parsed = await read_document(client, fetched(json_feed([(1, 1_700_000_000.0)], hub="https://hub.example/")),
                                     rule=RULE, fetched_at=1_700_000_100.0, sections=SECTIONS, max_bytes=1 << 20)
    [story] = parsed.articles
    assert (parsed.kind, parsed.title, story.id, story.title, story.section) == (
        "json", "Wire JSON", "j-1", "JSON story 1", "sports")
    assert story.published_at == 1_700_000_000.0 and story.summary == "Body 1"
    assert parsed.hubs == ("https://hub.example/",)
    async with make_client() as client:
        with pytest.raises(ParseError, match="JSON Feed version"):
            await read_document(client, fetched(b'{"items": []}'), rule=RULE, fetched_at=0, max_bytes=1 << 20)


def test_a_news_sitemap_keeps_its_newest_entries_within_bounds() -> None:
    small = read_sitemap(news_sitemap([(1, 1_700_000_000.0), (2, 1_700_000_600.0)], plain=3))
    assert [e["title"] for e in small.entries] == ["Map story 2", "Map story 1"]
    assert small.plain == 3 and small.note is None
    # 50,000 news entries: all read, the newest KEEP kept, and said.
    huge = read_sitemap(news_sitemap([(n, 1_600_000_000.0 + n) for n in range(MAX_ENTRIES)]))
    assert len(huge.entries) == KEEP and huge.entries[0]["title"] == f"Map story {MAX_ENTRIES - 1}"
    assert huge.note == f"kept the newest {KEEP:,} of {MAX_ENTRIES:,} news entries"
    # More than the protocol allows: reading stops there.
    over = read_sitemap(news_sitemap([(n, 1_600_000_000.0 + n) for n in range(MAX_ENTRIES + 10)]))
    assert over.cut and "stopped reading at 50,000 entries" in (over.note or "")
    # Entities are never expanded, a document that is no sitemap is refused.
    bomb = (b'<?xml version="1.0"?><!DOCTYPE u [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            b'<urlset><url><loc>&b;</loc></url></urlset>')
    assert read_sitemap(bomb).entries == []
    with pytest.raises(NotASitemap):
        read_sitemap(b"<rss/>")


def test_a_gzip_sitemap_is_inflated_within_the_size_cap() -> None:
    body = news_sitemap([(1, 1_700_000_000.0)])
    assert gunzip(gzip.compress(body), 1 << 20) == body
    with pytest.raises(NotASitemap, match="larger than"):
        gunzip(gzip.compress(b" " * (5 << 20)), 1 << 20)  # 5 MB of spaces in a few KB
    with pytest.raises(NotASitemap, match="cut short"):
        gunzip(gzip.compress(body)[:-20], 1 << 20)


def test_listing_pages_by_selector_by_articles_and_by_links() -> None:
    page = section_page([1, 2])
    by_selector = read_listing(page, "https://wire.example/sports/", selector="div.card")
    assert by_selector.how == "selector"
    assert [(e["link"], e["title"], e["summary"]) for e in by_selector.entries] == [
        ("https://wire.example/sports/card-story-1", "Card story 1", "Summary of card story 1."),
        ("https://wire.example/sports/card-story-2", "Card story 2", "Summary of card story 2."),
    ]
    assert read_listing(page, "https://wire.example/sports/", selector="div.missing").entries == []
    articles = (b'<html><body><article><h2><a href="/a/1">One</a></h2><time datetime="2026-01-02T10:00:00Z">x</time>'
                b'</article><article><p>no link</p></article></body></html>')
    found = read_listing(articles, "https://wire.example/", selector=None)
    assert found.how == "articles" and [e["title"] for e in found.entries] == ["One"]
    assert found.entries[0]["published_parsed"][:4] == (2026, 1, 2, 10)
    links = read_listing(front_page([1, 2, 3]) + b'<a href="https://elsewhere.example/x-y-z-w">Away from the site</a>',
                         "https://wire.example/", selector=None)
    assert links.how == "links" and len(links.entries) == 3
    # Nav links and a page with too few story links are not a listing.
    assert read_listing(front_page([1, 2]), "https://wire.example/", selector=None).entries == []


def test_a_page_of_ten_thousand_links_is_read_within_bounds() -> None:
    page = front_page(list(range(10_000)))
    listing = read_listing(page, "https://wire.example/", selector=None)
    assert len(listing.entries) == MAX_STORIES and listing.cut and listing.note is not None
    assert listing.links <= MAX_LINKS


def test_article_page_metadata_from_open_graph_and_json_ld() -> None:
    meta = read_page_meta(article_page(7, 1_700_000_000.0, "Sports"))
    assert (meta.published_at, meta.section, meta.summary, meta.title) == (
        1_700_000_000.0, "Sports", "What happened in story 7.", "Front page story number 7")
    og = read_page_meta(b'<html><head><meta property="article:published_time" content="2026-01-02T10:00:00+01:00">'
                        b'<meta property="article:section" content="World"><meta name="description" content="D">'
                        b'<script type="application/ld+json">{not json</script></head></html>')
    assert (og.published_at, og.section, og.summary) == (datetime(2026, 1, 2, 9, tzinfo=UTC).timestamp(), "World", "D")
    assert read_page_meta(b"") == read_page_meta(b"<html></html>")


@pytest.mark.parametrize(
    ("feed", "message"),
    [
        ({"url": "https://x.example/", "section": "world", "kind": "atom"}, "kind must be one of"),
        ({"url": "https://x.example/", "section": "world", "selector": "div[["}, "not a CSS selector"),
        ({"url": "https://x.example/", "section": "world", "selector": "div", "kind": "rss"}, "selector is for HTML"),
        ({"url": "https://x.example/", "section": "world", "css": "div"}, "unknown key 'css'"),
    ],
)
def test_the_feeds_file_checks_kind_and_selector(feed: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        parse_feeds_config({"sections": {"world": "World"}, "feeds": [feed]})
    good = parse_feeds_config({"sections": {"world": "World"}, "feeds": [
        {"url": "https://x.example/s", "section": "world", "selector": "div.card"},
        {"url": "https://x.example/m.xml", "section": "world", "kind": "sitemap"},
    ]})
    assert [(f.kind, f.selector) for f in good.feeds] == [("html", "div.card"), ("sitemap", None)]


# --- end to end -----------------------------------------------------------------------------


def rows(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(sql).fetchall()


def feeds_file(tmp_path: Path, site: FeedServer) -> Path:
    path = tmp_path / "feeds.toml"
    path.write_text(SECTIONS_TOML + f"""
[[feeds]]
url = "{site.url_for('/feed.json')}"
section_from = "category"
section = "world"

[[feeds]]
url = "{site.url_for('/sitemap-index.xml')}"
section = "world"

[[feeds]]
url = "{site.url_for('/sports/')}"
section = "sports"
selector = "div.card"

[[feeds]]
url = "{site.url_for('/')}"
section_from = "category"
section = "sweden"
kind = "html"
""")
    return path


async def test_every_kind_of_source_alerts_its_new_stories_once(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tg, site = sim_tg, sim_feeds
    caplog.set_level(logging.INFO, logger="bot")
    now = clock.time()
    site.serve("/feed.json", json_feed([(1, now - 3600)]), "application/feed+json")
    site.serve("/sitemap-index.xml", sitemap_index([site.url_for("/news-1.xml.gz"), site.url_for("/old.xml")]))
    site.serve("/news-1.xml.gz", gzip.compress(news_sitemap([(1, now - 3600)])), "application/gzip")
    site.serve("/old.xml", news_sitemap([(0, now - 86400 * 3)]))
    site.serve("/sports/", section_page([1]), "text/html")
    site.serve("/", front_page([1, 2, 3]), "text/html")
    settings = bot_settings(tg, tmp_path, NEWSBOT_FEEDS=str(feeds_file(tmp_path, site)), NEWSBOT_POLL_SECONDS="60")
    async with running_bot(settings, clock=clock):
        await ask(tg, READER, "/start")
        for section in ("world", "sports", "sweden"):
            tg.callback_query(READER, tg.sent_messages(READER)[0]["message_id"], f"sec:{section}")
        await tg.await_calls("answerCallbackQuery", 3, timeout=10)
        await tg.await_for(lambda: rows(settings.db_path, "SELECT count(*) FROM feeds WHERE primed = 1") == [(4,)],
                           timeout=30, interval=0.5)
        assert sorted(rows(settings.db_path, "SELECT found_kind FROM feeds")) == [
            ("html",), ("html",), ("json",), ("sitemap",)]

        published = clock.time()
        site.serve("/feed.json", json_feed([(1, now - 3600), (2, published)]), "application/feed+json")
        site.serve("/news-1.xml.gz", gzip.compress(news_sitemap([(1, now - 3600), (2, published)])), "application/gzip")
        # The index says its sitemap changed (a site's index that never changes is not read
        # again: its 304 answers for it).
        site.serve("/sitemap-index.xml", sitemap_index([site.url_for("/news-1.xml.gz"), site.url_for("/old.xml")], day=2))
        site.serve("/sports/", section_page([1, 2]), "text/html")
        site.serve("/", front_page([1, 2, 3, 4, 5]), "text/html")
        site.serve("/world/front-page-story-4", article_page(4, published - 60, "World"), "text/html")
        # Story 5's page never ends: it is cut at the fetch time-out and goes out without it.
        site.serve("/world/front-page-story-5", article_page(5, published) * 100, "text/html")
        site.slow("/world/front-page-story-5", 1.0, trickle_bytes=10)

        wanted = ["JSON story 2", "Map story 2", "Card story 2", "Front page story number 4", "Front page story number 5"]
        texts = lambda: [str(m.get("text")) for m in tg.sent_messages(READER)]  # noqa: E731
        await tg.await_for(lambda: all(any(w in t for t in texts()) for w in wanted), timeout=200)
        alert_of = {w: next(t for t in texts() if w in t) for w in wanted}
        assert "Sports" in alert_of["JSON story 2"]  # its tag
        assert "World" in alert_of["Map story 2"]
        assert "Sports" in alert_of["Card story 2"] and "Summary of card story 2." in alert_of["Card story 2"]
        # The article page's section and summary, read because the listing had neither.
        assert "World" in alert_of["Front page story number 4"]
        assert "What happened in story 4." in alert_of["Front page story number 4"]
        assert "Sweden" in alert_of["Front page story number 5"]  # the feed's own section
        assert "article page not read" in caplog.text
        # Each story once; the old sitemap the index names last was read too, the first time.
        await clock.run_for(120)
        for w in wanted:
            assert sum(w in t for t in texts()) == 1, w
        assert len(site.requests("/world/front-page-story-4")) == 1  # read once, then known

        # The section page is redesigned: the selector finds nothing, and /feeds says so.
        site.serve("/sports/", section_page([1, 2, 3], markup="tile"), "text/html")
        await clock.run_for(70)
        listing = str((await ask(tg, ADMIN, "/feeds"))["text"])
        assert "listing: no stories found on the page (nothing matches the selector 'div.card'" in listing
        assert "its markup may have changed" in listing and "HTML listing page" in listing
        assert "JSON Feed" in listing and "news sitemap" in listing


async def test_nested_sitemap_indexes_are_followed_within_bounds(
    clock: SimClock, sim_feeds: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    site = sim_feeds
    caplog.set_level(logging.INFO, logger="bot")
    for depth in range(5):  # an index naming an index naming … five deep
        site.serve(f"/index-{depth}.xml", sitemap_index([site.url_for(f"/index-{depth + 1}.xml")]))
    site.serve("/index-5.xml", news_sitemap([(1, clock.time())]))
    many = [site.url_for(f"/child-{n}.xml") for n in range(10)]
    site.serve("/wide.xml", sitemap_index(many))
    for n in range(10):
        site.serve(f"/child-{n}.xml", news_sitemap([(n, clock.time() - n)]))
    async with make_client(allow_private=True) as client:
        deep = await read_document(client, fetched(sitemap_index([site.url_for("/index-1.xml")]), site.url_for("/index-0.xml")),
                                   rule=RULE, fetched_at=clock.time(), max_bytes=1 << 20)
        wide = await read_document(client, fetched(sitemap_index(many), site.url_for("/wide.xml")), rule=RULE,
                                   fetched_at=clock.time(), max_bytes=1 << 20)
    assert len(site.requests("/index-3.xml")) == 0  # never deeper than two indexes
    assert len([r for r in site.requests() if r.path.startswith("/child-")]) == 3
    assert wide.note == "followed the newest 3 of 10 sitemaps"
    assert len(wide.articles) == 3
    assert deep.articles == () and deep.note == "sitemap indexes nested deeper than 2: not followed"
    assert len(site.requests("/index-1.xml")) == 1 and len(site.requests("/index-2.xml")) == 1


async def test_addfeed_of_a_home_page_offers_its_feeds_sitemaps_and_listing(
    clock: SimClock, sim_tg: FakeTelegram, sim_feeds: FeedServer, tmp_path: Path
) -> None:
    tg, site = sim_tg, sim_feeds
    site.serve("/", front_page([1, 2, 3]), "text/html")
    site.serve("/robots.txt", f"User-agent: *\nSitemap: {site.url_for('/news.xml')}\n".encode(), "text/plain")
    site.serve("/news.xml", news_sitemap([(1, clock.time())]))
    settings = bot_settings(tg, tmp_path)
    async with running_bot(settings, clock=clock):
        reply = str((await ask(tg, ADMIN, f"/addfeed {site.url_for('/')} world"))["text"])
        assert "news sitemap, 1 item, section World" in reply
        assert "The page also offers" in reply and "this page as a listing page: 3 stories" in reply
        assert rows(settings.db_path, "SELECT url, kind FROM feeds") == [(site.url_for("/news.xml"), "auto")]


async def test_article_pages_inside_the_network_are_refused_by_default(
    sim_feeds: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An article page's URL comes from the listing page: with the default address policy
    a loopback page gets no request, and its story keeps what it had."""
    from bot.pipeline.enrich import PageCache, enrich_entries

    caplog.set_level(logging.INFO, logger="bot")
    sim_feeds.serve("/world/a-story-here", article_page(1, 1_700_000_000.0), "text/html")
    entry = {"link": sim_feeds.url_for("/world/a-story-here"), "title": "A story here"}

    async def nothing_known(urls: list[str]) -> set[str]:
        return set()

    async with make_client() as client:
        [after] = await enrich_entries([dict(entry)], client=client, cache=PageCache(), known=nothing_known,
                                       max_bytes=1 << 20, page_timeout=5)
    assert after == entry
    assert sim_feeds.requests() == []
    assert "article page not read" in caplog.text and "NEWSBOT_FEED_ALLOW_PRIVATE" in caplog.text
