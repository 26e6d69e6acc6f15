"""Parse stage: feed bytes → Articles (ids, text, sections, tags, times, images)."""

from __future__ import annotations

import calendar
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.pipeline.discover import discover_feed_links
from bot.pipeline.parse import (
    ID_MAX,
    SUMMARY_MAX,
    TAG_MAX,
    TAGS_PER_ARTICLE,
    TITLE_MAX,
    UNTITLED,
    ParsedFeed,
    ParseError,
    canonical_url,
    parse_feed,
    parse_feed_async,
)
from storage.models import Article, SectionRule
from tests.conftest import SAMPLE_FEED

SAMPLE = SAMPLE_FEED
FEED_URL = "https://news.example.com/feeds/all.xml"
NOW = datetime(2025, 3, 13, 12, 0, tzinfo=UTC).timestamp()
SECTIONS = {
    "sweden": "Sweden",
    "living": "Living",
    "world": "World",
    "business": "Business",
    "sports": "Sports",
    "entertainment": "Entertainment",
}
FIXED = SectionRule(kind="fixed", section="world")
BY_CATEGORY = SectionRule(kind="category", domain="section")
RSS_HEADERS = {"Content-Type": "application/rss+xml; charset=utf-8"}


def rss(items: str, channel: str = "<title>Example</title>") -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel>'
        f"{channel}{items}</channel></rss>"
    ).encode()


def parse(
    body: bytes,
    rule: SectionRule = FIXED,
    *,
    url: str = FEED_URL,
    headers: dict[str, str] | None = None,
    sections: dict[str, str] | None = None,
    fetched_at: float = NOW,
) -> ParsedFeed:
    return parse_feed(
        body,
        url=url,
        rule=rule,
        fetched_at=fetched_at,
        headers=RSS_HEADERS if headers is None else headers,
        feed_id=7,
        sections=sections,
    )


def only(body: bytes, rule: SectionRule = FIXED, **kwargs: object) -> Article:
    parsed = parse(body, rule, **kwargs)  # type: ignore[arg-type]
    assert len(parsed.articles) == 1, parsed
    return parsed.articles[0]


def utc(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class TestSampleFeed:
    @pytest.fixture
    def parsed(self) -> ParsedFeed:
        return parse_feed(
            SAMPLE.read_bytes(),
            url="https://swedenherald.com/feed",
            rule=BY_CATEGORY,
            fetched_at=NOW,
            headers=RSS_HEADERS,
            feed_id=1,
            sections=SECTIONS,
        )

    def test_fifty_articles_in_the_six_sections(self, parsed: ParsedFeed) -> None:
        assert parsed.is_feed and not parsed.bozo and parsed.skipped == 0
        assert parsed.title == "Sweden Herald (sample)"
        assert len(parsed.articles) == 50
        assert len({a.id for a in parsed.articles}) == 50
        assert {a.section for a in parsed.articles} == set(SECTIONS)

    def test_first_story(self, parsed: ParsedFeed) -> None:
        first = parsed.articles[0]
        assert first == Article(
            id="sh-1000",
            url="https://swedenherald.com/article/sweden-beats-norway-in-the-handball-qualifier",
            title="Sweden beats Norway in the handball qualifier",
            summary="Sample story: the national team wins a close qualifier.",
            section="sports",
            # The section category is not repeated as a tag.
            tags=("Handball", "Norway"),
            # "Wed, 12 Mar 2025 21:00:00 +0100"
            published_at=utc("2025-03-12T20:00:00+00:00"),
            fetched_at=NOW,
            image_url="https://swedenherald.com/images/sweden-beats-norway-in-the-handball-qual.jpg",
            feed_id=1,
        )

    def test_every_article_is_clean(self, parsed: ParsedFeed) -> None:
        for article in parsed.articles:
            assert article.title and len(article.title) <= TITLE_MAX
            assert len(article.summary) <= SUMMARY_MAX
            assert "<" not in article.title + article.summary
            assert article.url.startswith("https://swedenherald.com/")
            assert article.published_at <= NOW
            assert article.image_url is None or article.image_url.startswith("https://")
            assert article.feed_id == 1

    def test_without_known_sections_categories_are_slugified(self) -> None:
        parsed = parse(SAMPLE.read_bytes(), BY_CATEGORY)
        assert {a.section for a in parsed.articles} == set(SECTIONS)

    async def test_async_variant_gives_the_same_result(self, parsed: ParsedFeed) -> None:
        again = await parse_feed_async(
            SAMPLE.read_bytes(),
            url="https://swedenherald.com/feed",
            rule=BY_CATEGORY,
            fetched_at=NOW,
            headers=RSS_HEADERS,
            feed_id=1,
            sections=SECTIONS,
        )
        assert again == parsed


class TestIds:
    def test_guid_is_the_id(self) -> None:
        body = rss(
            "<item><title>A</title><link>https://x.example/a</link><guid> g-1 </guid></item>"
        )
        assert only(body).id == "g-1"

    def test_relative_looking_guid_is_the_same_in_every_feed(self) -> None:
        # RSS treats a guid without isPermaLink="false" as a link; it must still
        # not be resolved into a per-feed id.
        body = rss("<item><title>A</title><guid>12345</guid></item>")
        sports = only(body, url="https://x.example/sports/rss.xml")
        world = only(body, url="https://x.example/world/rss.xml")
        assert sports.id == world.id == "12345"
        assert sports.url == "https://x.example/sports/12345"

    def test_without_guid_the_canonical_link(self) -> None:
        body = rss(
            "<item><title>A</title>"
            "<link>HTTPS://News.Example.COM:443/story?utm_source=rss&amp;b=2&amp;a=1&amp;fbclid=x#top</link>"
            "</item>"
        )
        article = only(body)
        assert article.id == "https://news.example.com/story?a=1&b=2"
        assert article.url == article.id

    def test_same_link_in_two_feeds_is_one_id(self) -> None:
        one = rss("<item><title>A</title><link>https://x.example/s?utm_medium=a</link></item>")
        two = rss("<item><title>A</title><link>https://x.example/s?utm_medium=b</link></item>")
        assert only(one).id == only(two).id == "https://x.example/s"

    def test_without_guid_or_link_a_content_hash(self) -> None:
        item = (
            "<item><title>Storm warning</title><description>Wind &amp; rain.</description></item>"
        )
        first = only(rss(item))
        again = only(rss(item, channel="<title>Another feed</title>"), url="https://other.example/")
        other = only(rss(item.replace("Storm", "Snow")))
        assert first.id.startswith("sha1:") and len(first.id) == 45
        assert first.id == again.id
        assert other.id != first.id
        assert first.url == ""

    def test_empty_guid_falls_back(self) -> None:
        body = rss("<item><title>A</title><guid>  </guid><link>https://x.example/a</link></item>")
        assert only(body).id == "https://x.example/a"

    def test_long_ids_are_hashed(self) -> None:
        guid = "urn:x:" + "a" * 600
        article = only(rss(f"<item><title>A</title><guid>{guid}</guid></item>"))
        assert article.id.startswith("sha1:") and len(article.id) <= ID_MAX

    def test_repeated_ids_are_dropped(self) -> None:
        item = "<item><title>A</title><guid>same</guid></item>"
        parsed = parse(rss(item + item))
        assert len(parsed.articles) == 1 and parsed.skipped == 1

    def test_entries_with_nothing_to_identify_are_skipped(self) -> None:
        parsed = parse(
            rss(
                "<item><pubDate>Wed, 12 Mar 2025 21:00:00 +0100</pubDate></item><item><title>B</title></item>"
            )
        )
        assert [a.title for a in parsed.articles] == ["B"]
        assert parsed.skipped == 1


class TestCanonicalUrl:
    @pytest.mark.parametrize(
        ("url", "canonical"),
        [
            ("HTTP://Example.COM", "http://example.com/"),
            ("http://example.com:80/a", "http://example.com/a"),
            ("https://example.com:8443/a", "https://example.com:8443/a"),
            ("https://example.com/A/B?z=1&a=2#frag", "https://example.com/A/B?a=2&z=1"),
            (
                "https://example.com/x?utm_source=a&UTM_Campaign=b&gclid=1&mc_cid=2&mc_eid=3"
                "&igshid=4&ref=5&ref_src=6&cmpid=7&ocid=8&_ga=9&keep=yes",
                "https://example.com/x?keep=yes",
            ),
            ("https://example.com/x?q=a%20b&q=a+b", "https://example.com/x?q=a%20b&q=a+b"),
            ("https://user:Pw@Example.com/", "https://user:Pw@example.com/"),
            ("  https://example.com/x?  ", "https://example.com/x"),
            ("tag:example.com,2025:1", "tag:example.com,2025:1"),
            ("http://[broken/", "http://[broken/"),
        ],
    )
    def test_examples(self, url: str, canonical: str) -> None:
        assert canonical_url(url) == canonical

    @given(st.text())
    def test_never_raises_and_is_idempotent(self, url: str) -> None:
        once = canonical_url(url)
        assert canonical_url(once) == once


class TestLinks:
    def test_relative_links_resolve_against_the_feed_url(self) -> None:
        body = rss(
            "<item><title>A</title><link>../story/1</link>"
            '<enclosure url="img/a.jpg" type="image/jpeg" length="1"/></item>'
        )
        article = only(body)
        assert article.url == "https://news.example.com/story/1"
        assert article.image_url == "https://news.example.com/feeds/img/a.jpg"

    def test_content_location_wins_over_the_request_url(self) -> None:
        body = rss("<item><title>A</title><link>/story/2</link></item>")
        headers = {**RSS_HEADERS, "Content-Location": "https://cdn.example.net/feed"}
        assert only(body, headers=headers).url == "https://cdn.example.net/story/2"

    def test_xml_base_is_honoured(self) -> None:
        body = (
            b'<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://base.example/news/">'
            b"<title>T</title><entry><id>e1</id><title>A</title>"
            b'<link rel="alternate" href="item/1"/></entry></feed>'
        )
        assert only(body).url == "https://base.example/news/item/1"

    def test_unsafe_link_schemes_are_dropped(self) -> None:
        body = rss("<item><title>A</title><guid>g</guid><link>javascript:alert(1)</link></item>")
        assert only(body).url == ""


class TestText:
    def test_html_becomes_plain_text(self) -> None:
        body = rss(
            "<item><title>Tom &amp;amp; Jerry &lt;b&gt;return&lt;/b&gt;</title><guid>g</guid>"
            "<description><![CDATA[<p>First&nbsp;para.</p><p>Second <a href='/x'>link</a>"
            " &amp; more.</p><script>alert(1)</script><img src='x.jpg'>]]></description></item>"
        )
        article = only(body)
        assert article.title == "Tom & Jerry return"
        assert article.summary == "First para. Second link & more."

    def test_summary_and_title_lengths(self) -> None:
        long_title = " ".join(["headline"] * 60)
        long_text = " ".join(["word"] * 300)
        article = only(
            rss(
                f"<item><title>{long_title}</title><guid>g</guid><description>{long_text}</description></item>"
            )
        )
        assert len(article.title) <= TITLE_MAX and article.title.endswith("headline…")
        assert len(article.summary) <= SUMMARY_MAX and article.summary.endswith("word…")

    def test_missing_title_comes_from_the_summary(self) -> None:
        text = "Police closed the E4 motorway near Uppsala after a crash involving four cars this morning."
        article = only(rss(f"<item><guid>g</guid><description>{text * 2}</description></item>"))
        assert article.title.startswith("Police closed the E4 motorway")
        assert article.title.endswith("…") and len(article.title) <= 100

    def test_untitled(self) -> None:
        assert only(rss("<item><link>https://x.example/a</link></item>")).title == UNTITLED

    def test_summary_repeating_the_title_is_dropped(self) -> None:
        body = rss(
            "<item><title>Same words</title><guid>g</guid><description>Same  words</description></item>"
        )
        assert only(body).summary == ""

    def test_atom_content_when_there_is_no_summary(self) -> None:
        body = (
            b'<feed xmlns="http://www.w3.org/2005/Atom"><title type="html">Atom &amp;lt;3</title>'
            b"<updated>2025-03-12T10:00:00Z</updated>"
            b"<entry><id>tag:ex.com,2025:1</id><title type='text'>a &lt; b</title>"
            b"<updated>2025-03-12T10:00:00+02:00</updated>"
            b'<link rel="alternate" href="https://ex.com/1"/>'
            b'<category term="tech" scheme="https://ex.com/sections" label="Technology"/>'
            b'<content type="html">&lt;p&gt;Full &lt;em&gt;text&lt;/em&gt;&lt;/p&gt;</content>'
            b"</entry></feed>"
        )
        parsed = parse(body, SectionRule(kind="category", domain="https://ex.com/sections"))
        assert parsed.title == "Atom <3"
        (article,) = parsed.articles
        assert article.id == "tag:ex.com,2025:1"
        assert article.title == "a < b"
        assert article.summary == "Full text"
        assert article.section == "tech"
        assert article.tags == ()
        assert article.published_at == utc("2025-03-12T08:00:00+00:00")


class TestSections:
    ITEM = (
        "<item><title>A</title><guid>g</guid>"
        '<category domain="section">{section}</category><category>Extra</category></item>'
    )

    def item(self, section: str) -> bytes:
        return rss(self.ITEM.format(section=section))

    def test_fixed(self) -> None:
        assert only(self.item("Sports")).section == "world"

    def test_category_by_known_name_or_slug(self) -> None:
        assert (
            only(self.item("ENTERTAINMENT"), BY_CATEGORY, sections=SECTIONS).section
            == "entertainment"
        )
        assert only(self.item("sports"), BY_CATEGORY, sections=SECTIONS).section == "sports"

    def test_category_mapping_is_case_insensitive(self) -> None:
        rule = SectionRule(kind="category", domain="section", mapping=(("Nöje", "entertainment"),))
        article = only(self.item("NÖJE"), rule, sections=SECTIONS)
        assert article.section == "entertainment"
        assert article.tags == ("Extra",)

    def test_unknown_category_falls_back_when_sections_are_known(self) -> None:
        rule = SectionRule(kind="category", domain="section", section="sweden")
        article = only(self.item("Opinion"), rule, sections=SECTIONS)
        assert article.section == "sweden"
        assert article.tags == ("Opinion", "Extra")

    def test_unknown_category_is_slugified_otherwise(self) -> None:
        assert only(self.item("Sport & Fritid"), BY_CATEGORY).section == "sport-fritid"

    def test_category_in_another_domain_is_not_a_section(self) -> None:
        body = rss(
            '<item><title>A</title><guid>g</guid><category domain="other">Sports</category></item>'
        )
        rule = SectionRule(kind="category", domain="section", section="world")
        article = only(body, rule, sections=SECTIONS)
        assert article.section == "world"
        assert article.tags == ("Sports",)

    def test_category_without_domain_uses_any_category(self) -> None:
        body = rss("<item><title>A</title><guid>g</guid><category>Sports</category></item>")
        assert only(body, SectionRule(kind="category"), sections=SECTIONS).section == "sports"

    @pytest.mark.parametrize(
        ("link", "rule", "section"),
        [
            ("https://x.example/sports/2025/story", SectionRule(kind="path"), "sports"),
            (
                "https://x.example/en/Business/story",
                SectionRule(kind="path", segment=1),
                "business",
            ),
            (
                "https://x.example/noje/story",
                SectionRule(kind="path", mapping=(("noje", "entertainment"),)),
                "entertainment",
            ),
            # The last segment names the story, not a section.
            (
                "https://x.example/story-about-sports",
                SectionRule(kind="path", section="world"),
                "world",
            ),
            ("https://x.example/blog/story", SectionRule(kind="path", section="world"), "world"),
            ("https://x.example/sports/", SectionRule(kind="path"), "sports"),
        ],
    )
    def test_path(self, link: str, rule: SectionRule, section: str) -> None:
        body = rss(f"<item><title>A</title><link>{link}</link></item>")
        assert only(body, rule, sections=SECTIONS).section == section


class TestTags:
    def test_deduplicated_limited_and_short(self) -> None:
        long = "very long tag " * 10
        categories = ["Drones", "drones", "DRONES", long, *[f"t{i}" for i in range(30)]]
        body = rss(
            "<item><title>A</title><guid>g</guid>"
            + "".join(f"<category>{c}</category>" for c in categories)
            + "</item>"
        )
        tags = only(body).tags
        assert tags[0] == "Drones" and tags[2] == "t0"
        assert tags[1].startswith("very long tag") and len(tags[1]) <= TAG_MAX
        assert len(tags) == TAGS_PER_ARTICLE


class TestDates:
    def item(self, date: str) -> bytes:
        return rss(f"<item><title>A</title><guid>g</guid><pubDate>{date}</pubDate></item>")

    def test_utc_regardless_of_offset(self) -> None:
        article = only(self.item("Wed, 12 Mar 2025 21:00:00 +0100"))
        assert article.published_at == utc("2025-03-12T20:00:00+00:00")
        assert article.published_at == calendar.timegm((2025, 3, 12, 20, 0, 0))

    def test_future_dates_are_clamped_and_reported(self) -> None:
        """A story dated beyond the tolerance gets the fetch time and is listed in
        `dated_ahead` (not news to alert); one a few minutes ahead keeps its date."""
        ahead = parse(self.item("Mon, 01 Jan 2099 00:00:00 GMT"))
        assert [a.published_at for a in ahead.articles] == [NOW]
        assert ahead.dated_ahead == {"g"}
        soon = datetime.fromtimestamp(NOW + 300, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
        close = parse(self.item(soon))
        assert [a.published_at for a in close.articles] == [NOW + 300]
        assert close.dated_ahead == frozenset()
        assert parse(self.item("Wed, 12 Mar 2025 21:00:00 +0100")).dated_ahead == frozenset()

    def test_missing_or_unreadable_dates_give_fetch_time(self) -> None:
        assert only(rss("<item><title>A</title><guid>g</guid></item>")).published_at == NOW
        assert only(self.item("the day before yesterday")).published_at == NOW

    def test_updated_when_there_is_no_published(self) -> None:
        body = (
            b'<feed xmlns="http://www.w3.org/2005/Atom"><title>T</title><entry><id>1</id>'
            b"<title>A</title><updated>2025-03-01T00:00:00Z</updated></entry></feed>"
        )
        assert only(body).published_at == utc("2025-03-01T00:00:00+00:00")


class TestImages:
    @pytest.mark.parametrize(
        ("markup", "image"),
        [
            (
                '<media:content url="https://i.example/a.jpg" medium="image"/>',
                "https://i.example/a.jpg",
            ),
            ('<media:content url="https://i.example/a" type="image/webp"/>', "https://i.example/a"),
            ('<media:content url="https://i.example/b.png?w=1"/>', "https://i.example/b.png?w=1"),
            ('<media:content url="https://v.example/a.mp4" type="video/mp4"/>', None),
            ('<media:thumbnail url="/thumbs/a.jpg"/>', "https://news.example.com/thumbs/a.jpg"),
            (
                '<enclosure url="https://i.example/c.gif" type="image/gif" length="1"/>',
                "https://i.example/c.gif",
            ),
            ('<enclosure url="https://a.example/c.mp3" type="audio/mpeg" length="1"/>', None),
            ('<media:thumbnail url="javascript:alert(1)"/>', None),
            ("", None),
        ],
    )
    def test_sources(self, markup: str, image: str | None) -> None:
        body = rss(f"<item><title>A</title><guid>g</guid>{markup}</item>")
        assert only(body).image_url == image


class TestNotAFeed:
    def test_html_page_raises_and_lists_its_feeds(self) -> None:
        page = (
            b"<!DOCTYPE html><html><head><title>News</title>"
            b'<link rel="alternate" type="application/rss+xml" href="/rss.xml">'
            b'<link rel="alternate" type="application/atom+xml" href="https://news.example.com/atom">'
            b'<link rel="stylesheet" href="/s.css"></head><body><p>Hello</p></body></html>'
        )
        with pytest.raises(ParseError, match=r"^parse: not a feed: an HTML page") as caught:
            parse(page, headers={"Content-Type": "text/html"})
        assert caught.value.result is not None and not caught.value.result.is_feed
        # The feeds the page names are found by the fetch stage's discovery.
        assert discover_feed_links(page, FEED_URL) == [
            "https://news.example.com/rss.xml",
            "https://news.example.com/atom",
        ]

    @pytest.mark.parametrize(
        "body",
        [b"", b"   \n\t ", b"\x00\x01\x02 garbage \xff\xfe", b"{\"version\": \"https://jsonfeed.org/version/1\"}",
         b"<?xml version='1.0'?>", b"<rss version=\"2.0\"><channel><title>Cut he"],
    )  # fmt: skip
    def test_empty_garbage_and_truncated_bodies_raise(self, body: bytes) -> None:
        with pytest.raises(ParseError, match=r"^parse: "):
            parse(body)

    def test_a_truncated_feed_is_a_parse_error(self) -> None:
        """Cut short, even after complete entries: a half story must not be stored (it would
        come back as a correction once the whole feed arrives)."""
        whole = rss(
            "<item><title>One</title><guid>1</guid></item>"
            "<item><title>Two</title><guid>2</guid></item>"
        )
        assert [a.id for a in parse(whole).articles] == ["1", "2"]
        for cut in (whole.index(b"<guid>2"), whole.index(b"</channel>"), len(whole) - 1):
            with pytest.raises(ParseError, match=r"^parse: document cut short") as caught:
                parse(whole[:cut])
            assert str(caught.value).count("parse: ") == 1

    def test_the_truncated_sample_feed_is_a_parse_error(self) -> None:
        body = SAMPLE.read_bytes()
        assert len(parse(body, BY_CATEGORY).articles) == 50
        for cut in (len(body) // 2, body.index(b"</item>") + 7, body.rindex(b"</channel>")):
            with pytest.raises(ParseError, match=r"^parse: document cut short"):
                parse(body[:cut], BY_CATEGORY)

    def test_an_error_inside_the_document_is_not_cut_short(self) -> None:
        """Broken markup in the middle is feedparser's to recover from: the entries it
        reads are kept."""
        body = rss("<item><title>One &bogus; two</title><guid>1</guid></item><item><title>Two</title><guid>2</guid></item>")
        parsed = parse(body)
        assert parsed.bozo and [a.id for a in parsed.articles] == ["1", "2"]

    def test_empty_but_valid_feed_is_not_an_error(self) -> None:
        parsed = parse(rss(""))
        assert parsed.is_feed and parsed.articles == () and parsed.title == "Example"

    def test_unexpected_feedparser_failures_become_parse_errors(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def explode(*args: object, **kwargs: object) -> object:
            raise RuntimeError("boom")

        monkeypatch.setattr(feedparser, "parse", explode)
        with pytest.raises(ParseError, match=r"^parse: feedparser failed: RuntimeError: boom"):
            parse(rss(""))

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=2000))
    def test_arbitrary_bytes_raise_only_parse_error(self, body: bytes) -> None:
        try:
            parse(body)
        except ParseError as exc:
            assert str(exc).startswith("parse: ")

    @settings(max_examples=200, deadline=None)
    @given(st.integers(min_value=0, max_value=10_000))
    def test_any_truncation_of_the_sample_is_a_parse_error(self, cut: int) -> None:
        """Wherever the download stops before the document ends (in a tag, an entity, a
        multi-byte character, between items), nothing of it is taken."""
        body = SAMPLE.read_bytes()
        whole = len(body.rstrip())
        with pytest.raises(ParseError, match=r"^parse: "):
            parse(body[: cut * (whole - 1) // 10_000], BY_CATEGORY)


@pytest.fixture
def listener() -> Iterator[tuple[str, list[bytes]]]:
    """A loopback TCP server recording whatever connects to it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    hits: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(0.5)
                try:
                    hits.append(conn.recv(1024))
                except OSError:
                    hits.append(b"")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", hits
    stop.set()
    thread.join()
    server.close()


class TestNoOutsideAccess:
    """Documents may name external entities and DTDs; parsing must not fetch or read them."""

    def test_external_entities_dtds_and_xinclude_are_not_fetched(
        self, listener: tuple[str, list[bytes]], tmp_path: Path
    ) -> None:
        base, hits = listener
        secret = tmp_path / "secret.txt"
        secret.write_text("TOP-SECRET")
        body = (
            '<?xml version="1.0"?>\n'
            f'<!DOCTYPE rss SYSTEM "{base}/dtd" [\n'
            f'  <!ENTITY remote SYSTEM "{base}/entity">\n'
            f'  <!ENTITY local SYSTEM "{secret.as_uri()}">\n'
            f'  <!ENTITY % param SYSTEM "{base}/param"> %param;\n'
            "]>\n"
            '<rss version="2.0" xmlns:xi="http://www.w3.org/2001/XInclude"><channel><title>T</title>'
            "<item><title>A &remote; &local;</title><guid>g</guid>"
            f'<description><xi:include href="{base}/xinclude" parse="text"/>text</description>'
            "</item></channel></rss>"
        ).encode()
        parsed = parse(body)
        assert hits == []
        assert all("TOP-SECRET" not in a.title + a.summary for a in parsed.articles)
