"""Match stage: which chats should hear about a new article, and why.

`Matcher` keeps every subscription in memory as an inverted index:

* section slug → the chats following that section;
* keyword → the chats following it, where a one-word keyword is found by its stem
  and a phrase by its first two stems (then the rest of the phrase is checked).

`Matcher.match` folds and tokenises the article once (`words.field_stems`) and
looks each stem and each pair of neighbouring stems up in a dict, so its cost
depends on the article and on how many keywords it matches, never on how many
subscriptions exist. Word rules (folding, whole words, plurals) are those of
`storage.words`.

Chat sets are immutable frozensets shared with the results: a popular section can
have tens of thousands of followers, and copying them for every article would cost
more than the matching itself. `MatchResult` is a read-only mapping chat id →
reasons that builds the per-chat dict only when asked, and exposes the groups
(reason, chats) for callers that can use them directly. Changes to subscriptions
are recorded as small pending sets and folded into new frozensets at the next
match, so a `/follow` costs O(1) and a result handed out earlier never changes.

Chats out of the audience (blocked the bot, left a group: "silenced") are taken out of
the chat sets while their subscriptions are remembered, so they get nothing until
un-silenced and matching never has to filter them. Paused chats are matched as usual:
their alerts are kept ('held') for /resume.

Why one module: the index is one data structure — its entries, chats, pending changes and
results share invariants (frozen sets handed out never change, silenced chats are never in a
set) that every method keeps; split, each part would have to know the others' internals.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import logging
import operator
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass
from typing import Final

from storage.models import Article, Subscription, SubscriptionKind
from storage.words import FIELD_BREAK, contains, field_stems, keyword_stems

log = logging.getLogger(__name__)

_EMPTY: Final[frozenset[int]] = frozenset()


class _Entry:
    """One section or one keyword value and the chats (not silenced) following it."""

    __slots__ = (
        "_adds", "_drops", "active", "chats", "group", "kind", "reason", "stems", "subscribers",
        "value",
    )

    def __init__(self, kind: SubscriptionKind, value: str, stems: tuple[str, ...]) -> None:
        self.kind: SubscriptionKind = kind
        reason = f"{kind}:{value}"
        self.reason = reason
        self.value = value
        self.stems = stems
        self.chats: frozenset[int] = _EMPTY
        # What a match reports, kept ready so matching allocates nothing per entry.
        self.group: tuple[str, frozenset[int]] = (reason, _EMPTY)
        # Pending changes since `chats` was built; invariants: _adds ∩ chats = ∅,
        # _drops ⊆ chats.
        self._adds: set[int] | None = None
        self._drops: set[int] | None = None
        # Subscriptions, silenced ones included: the entry is dropped at zero; and those
        # of chats not silenced (briefing-only ones included), for /stats.
        self.subscribers = 0
        self.active = 0

    def include(self, chat_id: int) -> bool:
        """Add a chat to the live set; True when the entry needs a flush."""
        if chat_id in self.chats:
            if self._drops:
                self._drops.discard(chat_id)
            return False
        if self._adds is None:
            self._adds = set()
        self._adds.add(chat_id)
        return True

    def exclude(self, chat_id: int) -> bool:
        """Remove a chat from the live set; True when the entry needs a flush."""
        if chat_id in self.chats:
            if self._drops is None:
                self._drops = set()
            self._drops.add(chat_id)
            return True
        if self._adds:
            self._adds.discard(chat_id)
        return False

    def flush(self) -> None:
        chats = self.chats
        if self._drops:
            chats = chats - self._drops
        if self._adds:
            chats = chats | self._adds
        self.chats = chats
        self.group = (self.reason, chats)
        self._adds = None
        self._drops = None


class _Chat:
    """Everything one chat follows; its id object is shared by every chat set.

    `quiet`: entries it follows for the briefing only (never in their live set).
    `threads`: reason ("section:sports", "keyword:drones") → the forum topic its alerts go
    to (a subscription made inside a topic); reasons not in it go to the General topic.
    """

    __slots__ = ("entries", "id", "quiet", "threads")

    def __init__(self, chat_id: int) -> None:
        self.id = chat_id
        self.entries: list[_Entry] = []
        self.quiet: set[_Entry] | None = None
        self.threads: dict[str, int] | None = None

    def live(self, entry: _Entry) -> bool:
        return self.quiet is None or entry not in self.quiet


@dataclass(frozen=True, slots=True)
class MatcherStats:
    """Counts for /stats and /metrics."""

    chats: int
    silenced_chats: int
    section_subscriptions: int
    keyword_subscriptions: int
    exclusions: int
    sections: int
    keywords: int
    phrases: int


_chain = itertools.chain.from_iterable
_reason_of = operator.itemgetter(0)


class MatchResult(Mapping[int, tuple[str, ...]]):
    """chat id → the reasons it matched, e.g. ("section:world", "keyword:drones").

    Reasons are the section first, then keywords in alphabetical order; every chat
    appears once. Made by `Matcher.match` in time independent of how many chats
    matched: it holds the matched (reason, chats) groups, and `groups` hands them
    out as they are. Iterating builds the per-chat dict (in C, a few tens of ns per
    chat), afresh for each iteration so that a kept result stays small.
    """

    __slots__ = ("_excluded", "_excluding", "_groups", "_keywords", "_len", "_sections")

    def __init__(
        self,
        sections: list[tuple[str, frozenset[int]]],
        keywords: list[tuple[str, frozenset[int]]],
        excluding: list[frozenset[int]] | None = None,
    ) -> None:
        self._sections = sections
        # Unsorted (sorted on first use of `groups`), each with at least one chat.
        self._keywords = keywords
        # The chat sets of the exclusions the story matched, joined on first use.
        self._excluding = excluding
        self._excluded: frozenset[int] | None = None if excluding else _EMPTY
        self._groups: tuple[tuple[str, frozenset[int]], ...] | None = None
        self._len: int | None = None

    @property
    def excluded(self) -> frozenset[int]:
        """Chats that excluded a word of the story: they get nothing, whatever matched."""
        if self._excluded is None:
            self._excluded = _EMPTY.union(*(self._excluding or ()))
            self._excluding = None
        return self._excluded

    @property
    def groups(self) -> tuple[tuple[str, frozenset[int]], ...]:
        """(reason, chat ids) for every reason that matched at least one chat, before
        exclusions (see `excluded`)."""
        if self._groups is None:
            keywords = self._keywords
            keywords.sort(key=_reason_of)
            self._groups = (*self._sections, *keywords)
            self._keywords = []
        return self._groups

    @property
    def reasons(self) -> tuple[str, ...]:
        """Every reason that matched, in result order."""
        return tuple(reason for reason, _ in self.groups)

    def as_dict(self) -> dict[int, tuple[str, ...]]:
        """A new plain dict chat id → reasons, exclusions applied."""
        result = _chats_to_reasons(self.groups)
        for chat_id in self.excluded.intersection(result):
            del result[chat_id]
        return result

    def __getitem__(self, chat_id: int) -> tuple[str, ...]:
        reasons = tuple(reason for reason, chats in self.groups if chat_id in chats)
        if not reasons or chat_id in self.excluded:
            raise KeyError(chat_id)
        return reasons

    def __contains__(self, chat_id: object) -> bool:
        return chat_id not in self.excluded and any(chat_id in chats for _, chats in self.groups)

    def __iter__(self) -> Iterator[int]:
        return iter(self.as_dict())

    def __len__(self) -> int:
        if self._len is None:
            groups = self.groups
            if len(groups) == 1 and not self.excluded:
                self._len = len(groups[0][1])
            else:
                self._len = len(_EMPTY.union(*(chats for _, chats in groups)) - self.excluded)
        return self._len

    def __bool__(self) -> bool:
        return bool(self.groups) and (not self.excluded or len(self) > 0)

    def keys(self) -> KeysView[int]:
        return self.as_dict().keys()

    def values(self) -> ValuesView[tuple[str, ...]]:
        return self.as_dict().values()

    def items(self) -> ItemsView[int, tuple[str, ...]]:
        return self.as_dict().items()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self.as_dict() == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"MatchResult({self.as_dict()!r})"


def _chats_to_reasons(
    groups: tuple[tuple[str, frozenset[int]], ...],
) -> dict[int, tuple[str, ...]]:
    if not groups:
        return {}
    reason, chats = groups[0]
    result: dict[int, tuple[str, ...]] = dict.fromkeys(chats, (reason,))
    for reason, chats in groups[1:]:
        # Set operations run in C; only chats with several reasons take the slow path.
        new = chats.difference(result)
        if len(new) != len(chats):
            for chat_id in chats - new:
                result[chat_id] += (reason,)
        result.update(dict.fromkeys(new, (reason,)))
    return result


class Matcher:
    """In-memory subscription index: `match(article)` → chats and reasons.

    Keyword subscriptions must carry `normalise_keyword` output in `value`; the
    reason reported for them is `keyword:<value>`, for sections `section:<slug>`.
    Not thread-safe; meant for the single event loop that runs the pipeline.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._chats: dict[int, _Chat] = {}
        self._silenced: set[int] = set()
        self._sections: dict[str, _Entry] = {}
        self._keywords: dict[str, _Entry] = {}
        self._excludes: dict[str, _Entry] = {}
        # One-word keywords and exclusions by stem, and what matching needs of them: the
        # groups of keywords with chats, and the chat sets of exclusions with chats (kept
        # apart, so a story's exclusions cost one more lookup and nothing else), refreshed
        # from `_by_stem` when stale. Reading them straight from the dicts saves an object
        # visit per matched word.
        self._by_stem: dict[str, tuple[_Entry, ...]] = {}
        self._single: dict[str, tuple[tuple[str, frozenset[int]], ...]] = {}
        self._single_out: dict[str, tuple[frozenset[int], ...]] = {}
        self._stale: set[str] = set()
        # Phrases by their first two stems.
        self._pairs: dict[tuple[str, str], tuple[_Entry, ...]] = {}
        self._dirty: set[_Entry] = set()
        # Keywords by their number of chats in the audience (for /stats: the most followed
        # without a pass over every keyword).
        self._ranked: dict[int, set[str]] = {}
        self._section_subs = 0
        self._keyword_subs = 0
        self._exclude_subs = 0

    @classmethod
    def from_subscriptions(
        cls, subs: Iterable[Subscription], silenced: Iterable[int] = ()
    ) -> Matcher:
        """A matcher holding `subs`, with the chats in `silenced` getting nothing."""
        matcher = cls()
        matcher.load(subs, silenced)
        return matcher

    def load(self, subs: Iterable[Subscription], silenced: Iterable[int] = ()) -> None:
        """Replace everything with `subs`; keywords that have no word are skipped."""
        self._reset()
        self._silenced.update(silenced)
        # A million subscriptions make a million small objects; the cyclic collector
        # would rescan them many times over while they are created.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for sub in subs:
                try:
                    self.add(sub)
                except ValueError as exc:
                    log.warning(
                        "skipped subscription chat_id=%s value=%r: %s", sub.chat_id, sub.value, exc
                    )
            self._flush()
        finally:
            if gc_was_enabled:
                gc.enable()

    def add(self, sub: Subscription) -> None:
        """Start matching `sub` (no-op if that chat already follows that value)."""
        entry = self._find_entry(sub.kind, sub.value) or self._new_entry(sub.kind, sub.value)
        chat = self._chats.get(sub.chat_id)
        if chat is None:
            chat = self._chats[sub.chat_id] = _Chat(sub.chat_id)
        elif entry in chat.entries:
            return
        chat.entries.append(entry)
        entry.subscribers += 1
        self._count(entry, +1)
        if sub.mode == "briefing" and sub.kind != "exclude":
            chat.quiet = (chat.quiet or set()) | {entry}
        if sub.thread_id is not None and sub.kind != "exclude":
            chat.threads = {**(chat.threads or {}), entry.reason: sub.thread_id}
        if chat.id not in self._silenced:
            self._activate(entry, +1)
            if chat.live(entry) and entry.include(chat.id):
                self._dirty.add(entry)

    def remove(self, chat_id: int, kind: str, value: str) -> None:
        """Stop matching one subscription (no-op if there is none)."""
        chat = self._chats.get(chat_id)
        entry = self._find_entry(kind, value)
        if chat is None or entry is None or entry not in chat.entries:
            return
        chat.entries.remove(entry)
        if chat.quiet:
            chat.quiet.discard(entry)
        if chat.threads:
            chat.threads.pop(entry.reason, None)
        if not chat.entries:
            del self._chats[chat_id]
        self._drop(entry, chat.id, silenced=chat_id in self._silenced)

    def remove_chat(self, chat_id: int) -> None:
        """Forget a chat: all its subscriptions and its silenced state."""
        chat = self._chats.pop(chat_id, None)
        silenced = chat_id in self._silenced
        self._silenced.discard(chat_id)
        if chat is not None:
            for entry in chat.entries:
                self._drop(entry, chat.id, silenced=silenced)

    def set_silenced(self, chat_id: int, silenced: bool) -> None:
        """Silence (or hear again) a chat that left the audience (blocked the bot, left a
        group), without forgetting its subscriptions."""
        if silenced == (chat_id in self._silenced):
            return
        if silenced:
            self._silenced.add(chat_id)
        else:
            self._silenced.discard(chat_id)
        chat = self._chats.get(chat_id)
        if chat is None:
            return
        for entry in chat.entries:
            self._activate(entry, -1 if silenced else 1)
            if not chat.live(entry):
                continue
            if entry.exclude(chat.id) if silenced else entry.include(chat.id):
                self._dirty.add(entry)

    def set_mode(self, chat_id: int, kind: str, value: str, mode: str) -> None:
        """A subscription changes between instant alerts and the briefing only."""
        chat = self._chats.get(chat_id)
        entry = self._find_entry(kind, value)
        if chat is None or entry is None or entry not in chat.entries or kind == "exclude":
            return
        if mode == "briefing":
            chat.quiet = (chat.quiet or set()) | {entry}
            if entry.exclude(chat.id):
                self._dirty.add(entry)
        else:
            if chat.quiet:
                chat.quiet.discard(entry)
            if chat.id not in self._silenced and entry.include(chat.id):
                self._dirty.add(entry)

    def set_thread(
        self, chat_id: int, value: str, thread_id: int | None, kind: SubscriptionKind = "section"
    ) -> None:
        """The forum topic a group's section (or keyword) alerts go to (None: the general
        topic)."""
        chat = self._chats.get(chat_id)
        if chat is None or kind == "exclude":
            return
        reason = f"{kind}:{value}"
        threads = dict(chat.threads or {})
        if thread_id is None:
            threads.pop(reason, None)
        else:
            threads[reason] = thread_id
        chat.threads = threads or None

    def clear_thread(self, chat_id: int, thread_id: int) -> None:
        """A deleted forum topic: its sections' alerts go to the general topic."""
        chat = self._chats.get(chat_id)
        if chat is not None and chat.threads:
            chat.threads = {s: t for s, t in chat.threads.items() if t != thread_id} or None

    def thread_for(self, chat_id: int, reasons: Iterable[str]) -> int | None:
        """The topic for an alert with these reasons (sections first, then keywords): that
        of the first one subscribed inside a topic; None (the General topic) if none was."""
        chat = self._chats.get(chat_id)
        threads = chat.threads if chat is not None else None
        if not threads:
            return None
        for reason in reasons:
            thread = threads.get(reason)
            if thread is not None:
                return thread
        return None

    def excludes(self, chat_id: int, article: Article) -> bool:
        """Whether one of the chat's exclusions matches the story (same word rules)."""
        chat = self._chats.get(chat_id)
        if chat is None:
            return False
        words = [e.stems for e in chat.entries if e.kind == "exclude"]
        if not words:
            return False
        stems = field_stems((article.title, article.summary, *article.tags))
        return any(contains(stems, phrase) for phrase in words)

    def exclusions_of(self, chat_id: int) -> list[tuple[str, ...]]:
        """The stems of the chat's exclusions (for /latest)."""
        chat = self._chats.get(chat_id)
        return [e.stems for e in chat.entries if e.kind == "exclude"] if chat else []

    def section_counts(self) -> dict[str, int]:
        """Section slug → chats in the audience following it."""
        return {slug: entry.active for slug, entry in self._sections.items() if entry.active}

    def top_keywords(self, limit: int = 10) -> list[tuple[str, int]]:
        """The most followed keywords (by chats in the audience), most followed first, then
        alphabetically."""
        best: list[tuple[str, int]] = []
        for count in sorted(self._ranked, reverse=True):
            if len(best) >= limit:
                break
            values = self._ranked[count]
            best += ((value, count) for value in heapq.nsmallest(limit - len(best), values))
        return best

    def rename_chat(self, old_id: int, new_id: int) -> None:
        """Move subscriptions and silenced state to a new id (group → supergroup)."""
        if old_id == new_id:
            return
        old = self._chats.get(old_id) or _Chat(old_id)
        was_silenced = old_id in self._silenced
        subs = [
            Subscription(
                chat_id=new_id, kind=entry.kind, value=entry.value, display="",
                mode="instant" if old.live(entry) else "briefing",
                thread_id=(old.threads or {}).get(entry.reason),
            )
            for entry in old.entries
        ]
        self.remove_chat(old_id)
        if was_silenced:
            self.set_silenced(new_id, True)
        for sub in subs:
            self.add(sub)

    def stats(self) -> MatcherStats:
        return MatcherStats(
            chats=len(self._chats),
            silenced_chats=len(self._silenced),
            section_subscriptions=self._section_subs,
            keyword_subscriptions=self._keyword_subs,
            exclusions=self._exclude_subs,
            sections=len(self._sections),
            keywords=len(self._keywords),
            phrases=sum(len(entries) for entries in self._pairs.values()),
        )

    def match(self, article: Article) -> MatchResult:
        """The chats to alert about `article`, each with every reason it matched.

        The result is a snapshot: later changes to subscriptions do not alter it.
        """
        if self._dirty or self._stale:
            self._flush()
        sections = []
        for slug in article.all_sections:
            entry = self._sections.get(slug)
            if entry is not None and entry.chats:
                sections.append(entry.group)
        if not self._by_stem and not self._pairs:
            return MatchResult(sections, [])
        # Title, summary and each tag are separate fields: a phrase never spans two.
        stems = field_stems((article.title, article.summary, *article.tags))
        single = self._single
        # `dict.keys() & iterable` walks the iterable and probes the dict, all in C.
        groups = list(_chain(map(single.__getitem__, single.keys() & stems)))
        excluding: list[frozenset[int]] | None = None
        if self._excludes:
            out = self._single_out
            excluding = list(_chain(map(out.__getitem__, out.keys() & stems)))
        pairs = self._pairs
        if pairs and len(stems) > 1:
            for pair in pairs.keys() & itertools.pairwise(stems):
                for entry in pairs[pair]:
                    if entry.chats and (len(entry.stems) == 2 or contains(stems, entry.stems)):
                        if entry.kind == "exclude":
                            (excluding := excluding or []).append(entry.chats)
                        else:
                            groups.append(entry.group)
        return MatchResult(sections, groups, excluding)

    def _words(self, kind: str) -> dict[str, _Entry]:
        if kind == "keyword":
            return self._keywords
        if kind == "exclude":
            return self._excludes
        raise ValueError(f"unknown subscription kind {kind!r}")

    def _find_entry(self, kind: str, value: str) -> _Entry | None:
        if kind == "section":
            return self._sections.get(value)
        return self._words(kind).get(value)

    def _new_entry(self, kind: SubscriptionKind, value: str) -> _Entry:
        if kind == "section":
            entry = self._sections[value] = _Entry("section", value, ())
            return entry
        table = self._words(kind)
        stems = keyword_stems(value)
        if not stems or FIELD_BREAK in stems:
            raise ValueError(f"keyword {value!r} has no word to match")
        entry = table[value] = _Entry(kind, value, stems)
        if len(stems) == 1:
            self._by_stem[stems[0]] = (*self._by_stem.get(stems[0], ()), entry)
            self._stale.add(stems[0])
        else:
            pair = (stems[0], stems[1])
            self._pairs[pair] = (*self._pairs.get(pair, ()), entry)
        return entry

    def _drop(self, entry: _Entry, chat_id: int, *, silenced: bool) -> None:
        entry.subscribers -= 1
        if not silenced:
            self._activate(entry, -1)
        self._count(entry, -1)
        if entry.exclude(chat_id):
            self._dirty.add(entry)
        if entry.subscribers == 0:
            self._forget(entry)

    def _forget(self, entry: _Entry) -> None:
        self._dirty.discard(entry)
        if not entry.stems:
            del self._sections[entry.value]
            return
        del self._words(entry.kind)[entry.value]
        if len(entry.stems) == 1:
            word = entry.stems[0]
            remaining = _without(self._by_stem[word], entry)
            if remaining:
                self._by_stem[word] = remaining
            else:
                del self._by_stem[word]
            self._stale.add(word)
        else:
            pair = (entry.stems[0], entry.stems[1])
            remaining = _without(self._pairs[pair], entry)
            if remaining:
                self._pairs[pair] = remaining
            else:
                del self._pairs[pair]

    def _activate(self, entry: _Entry, delta: int) -> None:
        """Change the number of chats in the audience following `entry`."""
        if entry.kind == "keyword" and entry.active:
            bucket = self._ranked[entry.active]
            bucket.discard(entry.value)
            if not bucket:
                del self._ranked[entry.active]
        entry.active += delta
        if entry.kind == "keyword" and entry.active:
            self._ranked.setdefault(entry.active, set()).add(entry.value)

    def _count(self, entry: _Entry, delta: int) -> None:
        if entry.kind == "keyword":
            self._keyword_subs += delta
        elif entry.kind == "exclude":
            self._exclude_subs += delta
        else:
            self._section_subs += delta

    def _flush(self) -> None:
        for entry in self._dirty:
            entry.flush()
            if len(entry.stems) == 1:
                self._stale.add(entry.stems[0])
        self._dirty.clear()
        for word in self._stale:
            entries = [entry for entry in self._by_stem.get(word, ()) if entry.chats]
            groups = tuple(entry.group for entry in entries if entry.kind != "exclude")
            if groups:
                self._single[word] = groups
            else:
                self._single.pop(word, None)
            excluding = tuple(entry.chats for entry in entries if entry.kind == "exclude")
            if excluding:
                self._single_out[word] = excluding
            else:
                self._single_out.pop(word, None)
        self._stale.clear()


def _without(entries: tuple[_Entry, ...], entry: _Entry) -> tuple[_Entry, ...]:
    return tuple(other for other in entries if other is not entry)
