"""Process-wide counters and histograms, and the /metrics text, through prometheus_client.

One `CollectorRegistry` per `Metrics` (nothing global, nothing at import time). Counters and
the send-time histogram live in the process; figures read from the database (backlog,
readers, feeds, database size…) are read by the /metrics handler just before each scrape and
handed to `render`, which exposes them as gauges through a collector of their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from storage.counters import LATENCY_BUCKETS

SEND_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# name → (help, label names)
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "newsbot_polls_total": ("Feed polls by result (new, not_modified, primed, error).", ("result",)),
    "newsbot_articles_new_total": ("New articles stored.", ()),
    "newsbot_alerts_queued_total": ("Alerts written to the outbox (held ones included).", ()),
    "newsbot_alerts_capped_total": ("New stories stored without alerts (per-poll cap, age).", ("why",)),
    "newsbot_feed_items_repeated_total": ("Feed items that another item of the same document already was (one story twice).", ()),
    "newsbot_stories_scoped_total": ("New stories stored under a feed-scoped id: their guid was another feed's story's.", ()),
    "newsbot_messages_sent_total": ("Messages delivered to Telegram, by kind (a combined message counts each alert).", ("kind",)),
    "newsbot_lane_messages_sent_total": ("Messages delivered to Telegram, by delivery lane (broadcasts, personal, sections, corrections; a combined message counts each alert).", ("lane",)),
    "newsbot_messages_failed_total": ("Messages given up on (400, or out of attempts).", ()),
    "newsbot_messages_blocked_total": ("Messages cancelled because the chat blocked the bot or is gone.", ()),
    "newsbot_telegram_errors_total": ("Telegram API errors by kind (429, 5xx, timeout, 403, 400, other).", ("kind",)),
    "newsbot_telegram_outages_total": ("Times sending paused because Telegram did not answer.", ()),
    "newsbot_errors_total": ("Handled errors by stage.", ("stage",)),
    "newsbot_flood_refusals_total": ("Commands ignored from chats sending too many.", ()),
    "newsbot_delivery_errors_total": ("Messages our own code failed to prepare or send (kept and tried again).", ()),
    "newsbot_stories_flapping_total": ("Stories whose headline changed more than 5 times in an hour.", ()),
    "newsbot_pushes_total": ("Pushes accepted: signed WebSub deliveries and authorised pings (per feed).", ("via",)),
    "newsbot_push_refused_total": ("Pushes refused, by channel and why (signature, secret, flood, unknown, inactive, bad_request).", ("via", "why")),
    "newsbot_source_bounds_total": ("Documents read only in part because they passed a bound (huge sitemaps, pages of links).", ("kind",)),
}

# The label of the gauges given as values by label (see `Metrics.render`); "kind" otherwise.
GAUGE_LABELS: dict[str, str] = {
    "newsbot_outbox_backlog": "lane",
    "newsbot_feed_failing": "feed",
    "newsbot_feed_errors": "feed",
    "newsbot_feed_interval_seconds": "feed",
    "newsbot_feed_requests_last_hour": "feed",
    "newsbot_feed_pushed": "feed",
}

# Gauges read from the database and the process at each scrape: name → help.
GAUGES: dict[str, str] = {
    "newsbot_outbox_backlog": "Outbox rows waiting to be sent, by lane.",
    "newsbot_outbox_held": "Alerts held for paused readers.",
    "newsbot_readers_active": "Readers getting alerts.",
    "newsbot_readers_paused": "Readers who paused alerts.",
    "newsbot_readers_inactive": "Readers who blocked the bot or left.",
    "newsbot_feeds_enabled": "Feeds being polled.",
    "newsbot_feeds_failing": "Feeds whose last poll failed.",
    "newsbot_feed_failing": "1 while the feed (by id) is failing: its last try failed.",
    "newsbot_feed_errors": "Tries in a row that failed, per feed (0 when its last try succeeded).",
    "newsbot_feed_interval_seconds": "The wait the feed's last poll chose before its next one (adaptive polling).",
    "newsbot_feed_requests_last_hour": "Requests newsbot made to the feed's site in the last hour (feed, sitemaps, article pages).",
    "newsbot_feed_pushed": "1 while push works for the feed (an active WebSub lease, or pings), polling being the safety net.",
    "newsbot_broadcasts_sending": "Broadcasts being sent.",
    "newsbot_last_poll_age_seconds": "Seconds since a feed was last polled successfully.",
    "newsbot_dispatcher_up": "1 while the dispatcher runs.",
    "newsbot_database_up": "1 while the database answers and takes writes.",
    "newsbot_updates_up": "1 while updates from Telegram arrive (long polling) or webhook mode.",
    "newsbot_telegram_up": "0 while sending is paused because Telegram does not answer.",
    "newsbot_sending_paused_since": "When sending paused for an outage (UTC epoch seconds); 0 while it runs.",
    "newsbot_undeliverable_messages": "Messages our own failures keep from going (a fault to fix; kept meanwhile).",
    "newsbot_database_bytes": "Size of the database file and its write-ahead log.",
    "newsbot_uptime_seconds": "Seconds since the process started.",
}


class _Snapshot(Collector):
    """Gauges from the last database read (set by `Metrics.render` before each scrape)."""

    def __init__(self) -> None:
        self.values: dict[str, list[tuple[dict[str, str], float]]] = {}

    def collect(self) -> Iterable[Metric]:
        for name, samples in sorted(self.values.items()):
            labels = sorted({key for sample_labels, _ in samples for key in sample_labels})
            family = GaugeMetricFamily(name, GAUGES.get(name, name), labels=labels)
            for sample_labels, value in samples:
                family.add_metric([sample_labels.get(k, "") for k in labels], value)
            yield family


class Metrics:
    """Counters and histograms; `started_at` and `last_poll_success` are monotonic times."""

    def __init__(self, started_at: float = 0.0) -> None:
        self.started_at = started_at
        self.last_poll_success: float | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        self._counters = {
            # prometheus_client adds the _total suffix itself.
            name: Counter(name.removesuffix("_total"), help_text, labels, registry=self.registry)
            for name, (help_text, labels) in COUNTERS.items()
        }
        self._send = Histogram(
            "newsbot_send_seconds", "Time for one send to Telegram, request to answer.",
            buckets=SEND_BUCKETS, registry=self.registry,
        )
        self._latency = Histogram(
            "newsbot_alert_latency_seconds",
            "Time from a story's publication (or first sight, undated) to Telegram accepting its alert.",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self._snapshot = _Snapshot()
        self.registry.register(self._snapshot)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        if amount <= 0:
            return
        counter = self._counters[name]
        (counter.labels(**labels) if labels else counter).inc(amount)

    def value(self, name: str, **labels: str) -> float:
        """The current value of a counter (tests and /stats)."""
        sample = self.registry.get_sample_value(name, labels or None)
        return 0.0 if sample is None else sample

    def observe_send(self, seconds: float) -> None:
        self._send.observe(seconds)

    def observe_alert_latency(self, seconds: float) -> None:
        self._latency.observe(max(0.0, seconds))

    def render(self, gauges: Mapping[str, float | Mapping[str, float]]) -> bytes:
        """The Prometheus text format; `gauges` maps a name to a value, or to values by the
        value of its one label (e.g. {"newsbot_outbox_backlog": {"personal": 3, …}})."""
        values: dict[str, list[tuple[dict[str, str], float]]] = {}
        for name, value in gauges.items():
            if isinstance(value, Mapping):
                label = GAUGE_LABELS.get(name, "kind")
                values[name] = [({label: str(k)}, float(v)) for k, v in value.items()]
            else:
                values[name] = [({}, float(value))]
        self._snapshot.values = values
        return generate_latest(self.registry)
