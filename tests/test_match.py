"""The match stage: hand-picked cases, then the index against a naive reference."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import load_settings
from bot.context import open_services
from bot.keywords import KeywordError, normalise_keyword
from bot.pipeline.match import Matcher, MatcherStats, MatchResult
from bot.stages.poll import enqueue_alerts
from storage import articles, chats, outbox, subscriptions
from storage.db import Database
from storage.models import Article, Subscription
from storage.words import stem, tokens


def article(
    title: str = "",
    summary: str = "",
    tags: Iterable[str] = (),
    section: str | None = None,
) -> Article:
    return Article(
        id="a1",
        url="https://example.com/a1",
        title=title,
        summary=summary,
        section=section,
        tags=tuple(tags),
        published_at=0.0,
        fetched_at=0.0,
    )


def keyword(chat_id: int, typed: str) -> Subscription:
    return Subscription(
        chat_id=chat_id, kind="keyword", value=normalise_keyword(typed), display=typed
    )


def section(chat_id: int, slug: str) -> Subscription:
    return Subscription(chat_id=chat_id, kind="section", value=slug, display=slug.title())


def matches(typed: str, title: str = "", summary: str = "", tags: Iterable[str] = ()) -> bool:
    matcher = Matcher.from_subscriptions([keyword(1, typed)])
    return 1 in matcher.match(article(title, summary, tags))


# --- what readers expect -------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "title"),
    [
        ("malmo", "Storm hits Malmö"),
        ("Malmö", "Storm hits Malmo"),
        ("MALMÖ", "storm hits malmö"),
        ("sao paulo", "Flooding in São Paulo"),
        ("São Paulo", "Flooding in SAO PAULO"),
        ("lodz", "Łódź mayor resigns"),
        ("north korea", "North Korea's leader visits Moscow"),
        ('"north korea"', "North Korea’s leader visits Moscow"),
        ("drone", "Drones spotted over airport"),
        ("drones", "A drone was spotted"),
        ("story", "Three stories from the front"),
        ("stories", "One story from the front"),
        ("bus", "Buses cancelled in Gothenburg"),
        ("art", "Art's new home opens"),
        ("art", "Modern art"),
        ("drones", "DRONES OVER STOCKHOLM"),
        ("f-16", "Denmark sends F-16s"),
        ("f-16", "Denmark sends F 16 jets"),
        ("drone", "Anti-drone systems bought"),
        ("c++", "C++ turns 40"),
        ("covid-19", "Covid-19 cases rise"),
        ("news", "Breaking news tonight"),
    ],
)
def test_keyword_matches(typed: str, title: str) -> None:
    assert matches(typed, title)


@pytest.mark.parametrize(
    ("typed", "title"),
    [
        ("art", "The party is over"),
        ("art", "Smart phones"),
        ("war", "Visit to Warsaw"),
        ("war", "Award for the mayor"),
        ("north korea", "Travel north of Korea"),
        ("north korea", "Korea north"),
        ("drones", "Droned on about nothing"),
        ("news", "New rules for landlords"),
        ("new", "Breaking news tonight"),
        ("c++", "Vitamin C helps"),
        ("malmo", "Malm furniture recall"),
    ],
)
def test_keyword_does_not_match(typed: str, title: str) -> None:
    assert not matches(typed, title)


def test_summary_and_tags_are_matched() -> None:
    assert matches("drones", title="Airport closed", summary="Several drones were seen.")
    assert matches("drones", title="Airport closed", tags=["Drones", "Police"])
    assert matches("north korea", title="Talks", tags=["North Korea"])


def test_a_phrase_never_spans_two_fields() -> None:
    assert not matches("north korea", title="Heading north", summary="Korea says no")
    assert not matches("north korea", title="Talks", tags=["North", "Korea"])


def test_one_entry_per_chat_with_every_reason() -> None:
    matcher = Matcher.from_subscriptions(
        [
            section(1, "world"),
            keyword(1, "drones"),
            keyword(1, "north korea"),
            keyword(1, "sweden"),
            keyword(2, "drone"),
            section(3, "world"),
            section(4, "sports"),
        ]
    )
    result = matcher.match(
        article("North Korea tests drones", "No word from Seoul.", ["Drones"], section="world")
    )
    assert result == {
        1: ("section:world", "keyword:drones", "keyword:north korea"),
        2: ("keyword:drone",),
        3: ("section:world",),
    }
    assert result[1] == ("section:world", "keyword:drones", "keyword:north korea")
    assert len(result) == 3
    assert 4 not in result
    assert sorted(result) == [1, 2, 3]


def test_no_match_is_an_empty_result() -> None:
    matcher = Matcher.from_subscriptions([keyword(1, "drones"), section(1, "world")])
    result = matcher.match(article("Nothing here", section="sports"))
    assert not result
    assert result == {}
    assert len(result) == 0
    with pytest.raises(KeyError):
        result[1]


def test_silenced_chats_get_nothing() -> None:
    matcher = Matcher.from_subscriptions(
        [keyword(1, "drones"), section(1, "world"), keyword(2, "drones")], silenced=[1]
    )
    story = article("Drones", section="world")
    assert matcher.match(story) == {2: ("keyword:drones",)}
    matcher.set_silenced(1, False)
    assert matcher.match(story) == {
        1: ("section:world", "keyword:drones"),
        2: ("keyword:drones",),
    }
    matcher.set_silenced(2, True)
    matcher.set_silenced(2, True)
    assert matcher.match(story) == {1: ("section:world", "keyword:drones")}


def test_subscriptions_added_while_silenced_stay_silent() -> None:
    matcher = Matcher()
    matcher.set_silenced(7, True)
    matcher.add(keyword(7, "drones"))
    assert matcher.match(article("Drones")) == {}
    matcher.set_silenced(7, False)
    assert matcher.match(article("Drones")) == {7: ("keyword:drones",)}


def test_add_is_idempotent_and_remove_works() -> None:
    matcher = Matcher()
    matcher.add(keyword(1, "drones"))
    matcher.add(keyword(1, "drones"))
    matcher.add(section(1, "world"))
    assert matcher.stats().keyword_subscriptions == 1
    story = article("Drones", section="world")
    assert matcher.match(story) == {1: ("section:world", "keyword:drones")}
    matcher.remove(1, "keyword", "drones")
    assert matcher.match(story) == {1: ("section:world",)}
    matcher.remove(1, "section", "world")
    assert matcher.match(story) == {}
    # Removing what is not there is harmless.
    matcher.remove(1, "section", "world")
    matcher.remove(99, "keyword", "drones")
    assert matcher.stats() == MatcherStats(0, 0, 0, 0, 0, 0, 0, 0)


def test_remove_chat() -> None:
    matcher = Matcher.from_subscriptions(
        [keyword(1, "drones"), section(1, "world"), keyword(2, "drones")], silenced=[1]
    )
    matcher.remove_chat(1)
    assert matcher.stats().chats == 1
    assert matcher.stats().silenced_chats == 0
    # A chat that comes back starts afresh: not silenced, no old subscriptions.
    matcher.add(keyword(1, "ukraine"))
    assert matcher.match(article("Drones in Ukraine", section="world")) == {
        1: ("keyword:ukraine",),
        2: ("keyword:drones",),
    }


def test_rename_chat_moves_subscriptions_and_silence() -> None:
    matcher = Matcher.from_subscriptions([keyword(-100, "drones"), section(-100, "world")])
    story = article("Drones", section="world")
    matcher.rename_chat(-100, -1009)
    assert matcher.match(story) == {-1009: ("section:world", "keyword:drones")}

    matcher.set_silenced(-1009, True)
    matcher.rename_chat(-1009, -1010)
    assert matcher.match(story) == {}
    matcher.set_silenced(-1010, False)
    assert matcher.match(story) == {-1010: ("section:world", "keyword:drones")}
    assert matcher.stats().chats == 1


def test_rename_into_an_existing_chat_merges() -> None:
    matcher = Matcher.from_subscriptions([keyword(1, "drones"), keyword(2, "drones")])
    matcher.rename_chat(1, 2)
    assert matcher.match(article("Drones")) == {2: ("keyword:drones",)}
    assert matcher.stats().keyword_subscriptions == 1


def test_changes_between_two_matches_cancel_out() -> None:
    matcher = Matcher.from_subscriptions([keyword(1, "drones"), keyword(2, "drones")])
    story = article("Drones")
    assert matcher.match(story) == {1: ("keyword:drones",), 2: ("keyword:drones",)}
    # Silenced and back before the next match: still there.
    matcher.set_silenced(1, True)
    matcher.set_silenced(1, False)
    # Added and removed (or silenced) before the next match: never there.
    matcher.add(keyword(3, "drones"))
    matcher.remove(3, "keyword", "drones")
    matcher.add(keyword(4, "drones"))
    matcher.set_silenced(4, True)
    assert matcher.match(story) == {1: ("keyword:drones",), 2: ("keyword:drones",)}


def test_last_follower_removed_while_other_keywords_remain() -> None:
    matcher = Matcher.from_subscriptions([keyword(1, "drones"), keyword(2, "ukraine")])
    story = article("Drones over Ukraine")
    assert matcher.match(story) == {1: ("keyword:drones",), 2: ("keyword:ukraine",)}
    matcher.remove(1, "keyword", "drones")
    assert matcher.match(story) == {2: ("keyword:ukraine",)}
    assert matcher.stats().keywords == 1


def test_earlier_results_do_not_change() -> None:
    matcher = Matcher.from_subscriptions([keyword(1, "drones")])
    first = matcher.match(article("Drones"))
    matcher.add(keyword(2, "drones"))
    matcher.remove_chat(1)
    assert first == {1: ("keyword:drones",)}
    assert matcher.match(article("Drones")) == {2: ("keyword:drones",)}


def test_groups_expose_reason_and_chats() -> None:
    matcher = Matcher.from_subscriptions(
        [section(1, "world"), section(2, "world"), keyword(2, "drones")]
    )
    result = matcher.match(article("Drones", section="world"))
    assert result.groups == (
        ("section:world", frozenset({1, 2})),
        ("keyword:drones", frozenset({2})),
    )
    assert result.reasons == ("section:world", "keyword:drones")
    assert dict(result.items()) == result.as_dict()


def test_load_replaces_everything_and_skips_keywords_without_words() -> None:
    matcher = Matcher.from_subscriptions([keyword(1, "drones")], silenced=[5])
    matcher.load(
        [
            keyword(2, "ukraine"),
            Subscription(chat_id=3, kind="keyword", value="!!", display="!!"),
        ]
    )
    assert matcher.stats() == MatcherStats(
        chats=1,
        silenced_chats=0,
        section_subscriptions=0,
        keyword_subscriptions=1,
        exclusions=0,
        sections=0,
        keywords=1,
        phrases=0,
    )
    assert matcher.match(article("Drones in Ukraine")) == {2: ("keyword:ukraine",)}


def test_add_refuses_bad_subscriptions() -> None:
    matcher = Matcher()
    with pytest.raises(ValueError, match="no word"):
        matcher.add(Subscription(chat_id=1, kind="keyword", value="--", display="--"))
    with pytest.raises(ValueError, match="kind"):
        matcher.add(Subscription(chat_id=1, kind="topic", value="x", display="x"))  # type: ignore[arg-type]
    assert matcher.stats().chats == 0


def test_stats_counts() -> None:
    matcher = Matcher.from_subscriptions(
        [
            section(1, "world"),
            section(2, "world"),
            section(2, "sports"),
            keyword(1, "drones"),
            keyword(2, "drones"),
            keyword(2, "north korea"),
        ],
        silenced=[2],
    )
    assert matcher.stats() == MatcherStats(
        chats=2,
        silenced_chats=1,
        section_subscriptions=3,
        keyword_subscriptions=3,
        exclusions=0,
        sections=2,
        keywords=2,
        phrases=1,
    )


def test_phrase_of_three_words() -> None:
    assert matches("prime minister office", "The prime minister's office said no")
    assert not matches("prime minister office", "The prime minister said office hours")
    assert matches("prime minister office", "Prime minister, prime minister office")


def test_keywords_sharing_a_first_stem() -> None:
    matcher = Matcher.from_subscriptions(
        [keyword(1, "north korea"), keyword(2, "north sea"), keyword(3, "north")]
    )
    assert matcher.match(article("North Sea oil")) == {
        2: ("keyword:north sea",),
        3: ("keyword:north",),
    }


def test_match_result_is_a_read_only_mapping() -> None:
    matcher = Matcher.from_subscriptions([keyword(1, "drones")])
    result = matcher.match(article("Drones"))
    assert isinstance(result, MatchResult)
    assert result.get(1) == ("keyword:drones",)
    assert result.get(2) is None
    assert list(result.keys()) == [1]
    assert list(result.values()) == [("keyword:drones",)]
    assert result == matcher.match(article("Drones"))
    assert "keyword:drones" in repr(result)


# --- exclusions, briefings, forum topics, several sections ------------------------------


def exclusion(chat_id: int, typed: str) -> Subscription:
    return Subscription(chat_id=chat_id, kind="exclude", value=normalise_keyword(typed), display=typed)


def test_an_excluded_word_takes_the_chat_out_whatever_matched() -> None:
    """A story matched by a section (or a keyword) but holding a word the chat excluded
    gives that chat nothing; chats without the exclusion are unaffected."""
    matcher = Matcher.from_subscriptions(
        [
            section(1, "sports"), exclusion(1, "football"),
            section(2, "sports"),
            keyword(3, "derby"), exclusion(3, "football"),
            section(4, "sports"), exclusion(4, "hockey"),
        ]
    )  # fmt: skip
    story = article("Derby day", "A football derby in Malmö", section="sports")
    result = matcher.match(story)
    assert result == {2: ("section:sports",), 4: ("section:sports",)}
    assert 1 not in result and 3 not in result
    assert len(result) == 2 and sorted(result) == [2, 4]
    with pytest.raises(KeyError):
        result[1]
    assert result.excluded == {1, 3}
    # Excluded words follow the word rule: plurals, case and accents, in any field.
    assert 1 not in matcher.match(article("Derby day", tags=["FOOTBALLS"], section="sports"))
    assert 1 in matcher.match(article("Derby day", "Hockey tonight", section="sports"))
    assert matcher.excludes(1, story) and not matcher.excludes(2, story)
    assert matcher.exclusions_of(1) == [("football",)]
    assert matcher.stats().exclusions == 3


def test_an_exclusion_alone_matches_nothing_and_can_be_lifted() -> None:
    matcher = Matcher.from_subscriptions([exclusion(1, "football"), section(2, "sports")])
    story = article("Football", section="sports")
    assert matcher.match(story) == {2: ("section:sports",)}
    matcher.add(section(1, "sports"))
    assert matcher.match(story) == {2: ("section:sports",)}
    matcher.remove(1, "exclude", "football")
    assert matcher.match(story) == {1: ("section:sports",), 2: ("section:sports",)}


def test_briefing_only_subscriptions_are_not_matched_but_counted() -> None:
    """A subscription for the briefing only sends no alert; it still counts in /stats."""
    subs = [
        Subscription(chat_id=1, kind="section", value="world", display="World", mode="briefing"),
        Subscription(chat_id=1, kind="keyword", value="drones", display="drones", mode="briefing"),
        keyword(1, "ukraine"),
        section(2, "world"),
    ]
    matcher = Matcher.from_subscriptions(subs)
    story = article("Drones over Ukraine", section="world")
    assert matcher.match(story) == {1: ("keyword:ukraine",), 2: ("section:world",)}
    assert matcher.section_counts() == {"world": 2}
    assert matcher.top_keywords() == [("drones", 1), ("ukraine", 1)]
    assert matcher.stats().section_subscriptions == 2
    assert matcher.stats().keyword_subscriptions == 2
    # Back to instant alerts, and to the briefing again.
    matcher.set_mode(1, "section", "world", "instant")
    assert matcher.match(story)[1] == ("section:world", "keyword:ukraine")
    matcher.set_mode(1, "section", "world", "briefing")
    assert matcher.match(story)[1] == ("keyword:ukraine",)


def test_threads_follow_the_first_bound_section() -> None:
    """A forum group's section alerts go to the topic the section is bound to."""
    matcher = Matcher.from_subscriptions(
        [
            Subscription(chat_id=-100, kind="section", value="sports", display="Sports", thread_id=7),
            Subscription(chat_id=-100, kind="section", value="world", display="World", thread_id=9),
            section(-100, "living"),
            keyword(-100, "drones"),
        ]
    )
    assert matcher.thread_for(-100, ("section:living", "section:world", "section:sports")) == 9
    assert matcher.thread_for(-100, ("section:sports", "keyword:drones")) == 7
    assert matcher.thread_for(-100, ("keyword:drones",)) is None
    assert matcher.thread_for(-100, ("section:living",)) is None
    assert matcher.thread_for(5, ("section:sports",)) is None
    matcher.clear_thread(-100, 7)  # the topic was deleted
    assert matcher.thread_for(-100, ("section:sports",)) is None
    matcher.set_thread(-100, "sports", 11)
    assert matcher.thread_for(-100, ("section:sports",)) == 11
    matcher.rename_chat(-100, -1001)
    assert matcher.thread_for(-1001, ("section:sports", "section:world")) == 11
    matcher.remove(-1001, "section", "sports")
    assert matcher.thread_for(-1001, ("section:sports", "section:world")) == 9


def test_a_story_in_several_sections_matches_each() -> None:
    matcher = Matcher.from_subscriptions(
        [section(1, "sweden"), section(2, "world"), section(3, "world"), section(3, "sweden"),
         section(4, "sports")]
    )  # fmt: skip
    story = Article(
        id="a1", url="https://example.com/a1", title="Storm", summary="", section="world",
        tags=(), published_at=0.0, fetched_at=0.0, sections=("world", "sweden"),
    )
    assert matcher.match(story) == {
        1: ("section:sweden",),
        2: ("section:world",),
        3: ("section:world", "section:sweden"),
    }


def test_section_counts_and_top_keywords_count_the_audience() -> None:
    matcher = Matcher.from_subscriptions(
        [
            section(1, "world"), section(2, "world"), section(3, "world"), section(2, "sports"),
            keyword(1, "drones"), keyword(2, "drones"), keyword(3, "drones"),
            keyword(1, "ukraine"), keyword(2, "ukraine"), keyword(1, "malmö"), keyword(3, "Zebra"),
        ],
        silenced=[3],
    )  # fmt: skip
    assert matcher.section_counts() == {"world": 2, "sports": 1}
    assert matcher.top_keywords() == [("drones", 2), ("ukraine", 2), ("malmo", 1)]
    assert matcher.top_keywords(limit=1) == [("drones", 2)]
    matcher.set_silenced(3, False)
    assert matcher.top_keywords()[0] == ("drones", 3)
    assert ("zebra", 1) in matcher.top_keywords()
    matcher.remove_chat(2)
    assert matcher.section_counts() == {"world": 2}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["add", "remove", "silence", "hear", "leave"]),
                  st.integers(1, 6), st.sampled_from(["drones", "ukraine", "malmo", "zebra", "oil"])),
        max_size=60,
    ),
    st.integers(1, 6),
)
def test_top_keywords_equal_a_count_over_every_subscription(steps: list[tuple[str, int, str]], limit: int) -> None:
    """However subscriptions come and go and chats fall silent, the ranking kept as they
    change equals counting every live subscription."""
    matcher = Matcher()
    following: dict[int, set[str]] = {}
    silenced: set[int] = set()
    for action, chat_id, word in steps:
        if action == "add":
            matcher.add(keyword(chat_id, word))
            following.setdefault(chat_id, set()).add(word)
        elif action == "remove":
            matcher.remove(chat_id, "keyword", word)
            following.get(chat_id, set()).discard(word)
        elif action == "leave":
            matcher.remove_chat(chat_id)
            following.pop(chat_id, None)
            silenced.discard(chat_id)
        else:
            matcher.set_silenced(chat_id, action == "silence")
            (silenced.add if action == "silence" else silenced.discard)(chat_id)
    counts: dict[str, int] = {}
    for chat_id, words in following.items():
        for word in words if chat_id not in silenced else ():
            counts[word] = counts.get(word, 0) + 1
    expected = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]
    assert matcher.top_keywords(limit) == expected


# --- the index against a reference that loops over every subscription ---------------


def _reason_order(reason: str) -> tuple[bool, str]:
    return (not reason.startswith("section:"), reason)


def reference_match(
    subs: Iterable[Subscription], silenced: set[int], story: Article
) -> dict[int, tuple[str, ...]]:
    fields = [story.title, story.summary, *story.tags]
    field_stems = [[stem(word) for word in tokens(field)] for field in fields]
    found: dict[int, set[str]] = {}
    for sub in subs:
        if sub.chat_id in silenced:
            continue
        if sub.kind == "section":
            hit = story.section == sub.value
        else:
            phrase = [stem(word) for word in tokens(sub.value)]
            hit = any(
                stems[start : start + len(phrase)] == phrase
                for stems in field_stems
                for start in range(len(stems) - len(phrase) + 1)
            )
        if hit:
            found.setdefault(sub.chat_id, set()).add(f"{sub.kind}:{sub.value}")
    return {chat: tuple(sorted(reasons, key=_reason_order)) for chat, reasons in found.items()}


_WORDS = [
    "drone", "drones", "Drones'", "north", "North", "korea", "Korea's", "Korea’s", "malmö",
    "Malmo", "MALMÖ", "art", "Art's", "party", "war", "warsaw", "story", "stories", "news",
    "new", "c++", "C", "f-16", "F-16s", "São", "paulo", "box", "boxes", "bus", "buses",
    "o'brien", "the", "of", "straße", "strasse", "ø", "movie", "movies", "1990s",
]  # fmt: skip
_SEPARATORS = [" ", " ", " ", ", ", ". ", "-", " — ", "'s ", "/", "\n", "\x1f"]
_SECTIONS = ["world", "sports", "sweden"]

# Few distinct words, so that keywords and phrases often occur in the articles.
_COMMON = ["north", "korea", "drones", "drone", "Malmö", "malmo", "art", "the", "stories"]
_word = st.one_of(
    st.sampled_from(_COMMON),
    st.sampled_from(_COMMON),
    st.sampled_from(_WORDS),
    st.text(alphabet="abcöé'-+# ", min_size=1, max_size=6),
)


@st.composite
def _field(draw: st.DrawFn) -> str:
    words = draw(st.lists(_word, max_size=12))
    parts: list[str] = []
    for word in words:
        parts.append(word)
        parts.append(draw(st.sampled_from(_SEPARATORS)))
    return "".join(parts)


_article = st.builds(
    article,
    title=_field(),
    summary=_field(),
    tags=st.lists(_field(), max_size=3),
    section=st.one_of(st.none(), st.sampled_from(_SECTIONS)),
)


@st.composite
def _subscription(draw: st.DrawFn) -> Subscription:
    chat_id = draw(st.integers(min_value=-3, max_value=4))
    if draw(st.booleans()):
        slug = draw(st.sampled_from(_SECTIONS))
        return Subscription(chat_id=chat_id, kind="section", value=slug, display=slug)
    typed = " ".join(draw(st.lists(_word, min_size=1, max_size=3)))
    if draw(st.booleans()):
        typed = " ".join(draw(st.lists(st.sampled_from(_COMMON), min_size=1, max_size=3)))
    try:
        value = normalise_keyword(typed)
    except KeywordError:
        value = "drones"
    return Subscription(chat_id=chat_id, kind="keyword", value=value, display=typed)


_chat = st.integers(min_value=-3, max_value=4)
_operation = st.one_of(
    st.tuples(st.just("add"), _subscription()),
    st.tuples(st.just("add"), _subscription()),
    st.tuples(st.just("match"), _article),
    st.tuples(st.just("remove"), _subscription()),
    st.tuples(st.just("remove_chat"), _chat),
    st.tuples(st.just("silence"), _chat, st.booleans()),
    st.tuples(st.just("rename"), _chat, _chat),
    st.tuples(st.just("match"), _article),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_subscription(), max_size=25), st.sets(_chat, max_size=2), _article)
def test_match_equals_reference(
    subs: list[Subscription], silenced: set[int], story: Article
) -> None:
    matcher = Matcher.from_subscriptions(subs, silenced)
    result = matcher.match(story)
    expected = reference_match(subs, silenced, story)
    assert result.as_dict() == expected
    assert len(result) == len(expected)
    for chat_id, reasons in expected.items():
        assert chat_id in result
        assert result[chat_id] == reasons
    assert sorted(reason for reason, _ in result.groups) == sorted(
        {reason for reasons in expected.values() for reason in reasons}
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(_operation, max_size=40), _article)
def test_changes_keep_the_index_equal_to_reference(
    operations: list[tuple[object, ...]], story: Article
) -> None:
    matcher = Matcher()
    subs: set[tuple[int, str, str]] = set()
    silenced: set[int] = set()

    def model() -> list[Subscription]:
        return [
            Subscription(
                chat_id=c, kind="section" if k == "section" else "keyword", value=v, display=v
            )
            for c, k, v in subs
        ]

    for operation in operations:
        match operation:
            case ("add", Subscription() as sub):
                matcher.add(sub)
                subs.add((sub.chat_id, sub.kind, sub.value))
            case ("remove", Subscription() as sub):
                matcher.remove(sub.chat_id, sub.kind, sub.value)
                subs.discard((sub.chat_id, sub.kind, sub.value))
            case ("remove_chat", int() as chat_id):
                matcher.remove_chat(chat_id)
                subs = {s for s in subs if s[0] != chat_id}
                silenced.discard(chat_id)
            case ("silence", int() as chat_id, bool() as flag):
                matcher.set_silenced(chat_id, flag)
                (silenced.add if flag else silenced.discard)(chat_id)
            case ("rename", int() as old, int() as new):
                matcher.rename_chat(old, new)
                if old != new:
                    subs = {(new if c == old else c, k, v) for c, k, v in subs}
                    if old in silenced:
                        silenced.discard(old)
                        silenced.add(new)
            case ("match", Article() as other):
                assert matcher.match(other) == reference_match(model(), silenced, other)
    assert matcher.match(story) == reference_match(model(), silenced, story)
    stats = matcher.stats()
    assert stats.keyword_subscriptions == sum(1 for s in subs if s[1] == "keyword")
    assert stats.section_subscriptions == sum(1 for s in subs if s[1] == "section")
    assert stats.keywords == len({s[2] for s in subs if s[1] == "keyword"})


# --- the same with exclusions, briefing-only subscriptions and several sections ------------


def reference_match_all(
    subs: Iterable[Subscription], silenced: set[int], story: Article
) -> dict[int, tuple[str, ...]]:
    """Every subscription tried in turn: exclusions drop the chat, briefing-only ones alert
    nobody, sections come in the story's order and keywords alphabetically."""
    fields = [[stem(word) for word in tokens(f)] for f in (story.title, story.summary, *story.tags)]
    seen: set[tuple[int, str, str]] = set()
    found: dict[int, set[str]] = {}
    excluded: set[int] = set()
    for sub in subs:
        if (sub.chat_id, sub.kind, sub.value) in seen:
            continue  # a second add of the same subscription changes nothing
        seen.add((sub.chat_id, sub.kind, sub.value))
        if sub.chat_id in silenced:
            continue
        if sub.kind == "section":
            hit = sub.value in story.all_sections
        else:
            phrase = [stem(word) for word in tokens(sub.value)]
            hit = any(
                stems[start : start + len(phrase)] == phrase
                for stems in fields
                for start in range(len(stems) - len(phrase) + 1)
            )
        if not hit:
            continue
        if sub.kind == "exclude":
            excluded.add(sub.chat_id)
        elif sub.mode == "instant":
            found.setdefault(sub.chat_id, set()).add(f"{sub.kind}:{sub.value}")
    order = {f"section:{slug}": n for n, slug in enumerate(story.all_sections)}

    def rank(reason: str) -> tuple[int, str]:
        return (order.get(reason, len(order)), reason)

    return {
        chat: tuple(sorted(reasons, key=rank)) for chat, reasons in found.items() if chat not in excluded
    }


@st.composite
def _any_subscription(draw: st.DrawFn) -> Subscription:
    sub = draw(_subscription())
    kind = sub.kind
    if kind == "keyword" and draw(st.integers(0, 3)) == 0:
        kind = "exclude"
    mode = "briefing" if kind != "exclude" and draw(st.integers(0, 3)) == 0 else "instant"
    return Subscription(chat_id=sub.chat_id, kind=kind, value=sub.value, display=sub.display, mode=mode)


@st.composite
def _sectioned_article(draw: st.DrawFn) -> Article:
    story = draw(_article)
    slugs = tuple(draw(st.lists(st.sampled_from(_SECTIONS), unique=True, max_size=3)))
    return Article(
        id=story.id, url=story.url, title=story.title, summary=story.summary,
        section=slugs[0] if slugs else None, tags=story.tags, published_at=0.0, fetched_at=0.0,
        sections=slugs,
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(_any_subscription(), max_size=25), st.sets(_chat, max_size=2), _sectioned_article())
def test_match_with_exclusions_and_briefings_equals_reference(
    subs: list[Subscription], silenced: set[int], story: Article
) -> None:
    matcher = Matcher.from_subscriptions(subs, silenced)
    result = matcher.match(story)
    expected = reference_match_all(subs, silenced, story)
    assert result.as_dict() == expected
    assert len(result) == len(expected)
    assert bool(result) == bool(expected)
    for chat_id in range(-3, 5):
        assert (chat_id in result) == (chat_id in expected)


# --- paused chats: matched (their alerts are held), only inactive ones are silenced ---------


async def test_paused_chats_are_still_matched_and_their_alerts_held(tmp_path: Path) -> None:
    """The matcher loaded at start silences chats out of the audience, not paused ones:
    a paused reader's alerts are kept ('held') for /resume."""
    settings = load_settings({"NEWSBOT_DB": str(tmp_path / "newsbot.db")}, env_file=None)
    db = await Database.open(settings.db_path)
    try:
        for chat_id in (1, 2, 3):
            await chats.join(db, chat_id, "private", now=time.time())
            await subscriptions.add_subscription(db, chat_id, "section", "world", "World", limit=10, now=time.time())
        await chats.set_option(db, 2, "paused", True, now=time.time())
        await outbox.block_chat(db, 3, "Forbidden: bot was blocked by the user", now=time.time())
    finally:
        await db.close()
    services = await open_services(settings)
    try:
        story = article("Storm", section="world")
        assert services.matcher.match(story) == {1: ("section:world",), 2: ("section:world",)}
        async with services.db.write() as conn:
            await articles.store_articles(conn, [story], now=time.time())
        await enqueue_alerts(services, [story])
        rows = await services.db.fetchall("SELECT chat_id, state FROM outbox ORDER BY chat_id")
        assert [(r[0], r[1]) for r in rows] == [(1, "pending"), (2, "held")]
    finally:
        await services.close()


async def test_the_loaded_index_is_left_out_of_the_collectors_passes(tmp_path: Path) -> None:
    """At start the matcher's index (millions of objects at full size) is frozen: each full
    pass of the cyclic collector walked all of it and stalled the event loop (110-210 ms a
    pass at 200,000 subscriptions, bench/year.py's due loads)."""
    settings = load_settings({"NEWSBOT_DB": str(tmp_path / "newsbot.db")}, env_file=None)
    db = await Database.open(settings.db_path)
    try:
        for chat_id in range(1, 201):
            await chats.join(db, chat_id, "private", now=time.time())
            await subscriptions.add_subscription(db, chat_id, "keyword", f"word{chat_id}", f"word{chat_id}", limit=10, now=time.time())
    finally:
        await db.close()
    gc.unfreeze()
    services = await open_services(settings)
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        index = services.matcher._chats
        assert len(index) == 200
        # Everything the index holds at start is in the permanent generation, not in the
        # generations a collection walks.
        walked = {id(o) for generation in range(3) for o in gc.get_objects(generation)}
        assert id(index) not in walked and not any(id(chat) in walked for chat in index.values())
    finally:
        await services.close()
        gc.unfreeze()
