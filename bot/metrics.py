"""Process-wide counters and latency samples, exposed at /metrics in Prometheus text format."""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HELP = {
    "newsbot_polls_total": "Feed polls by result (new, not_modified, error).",
    "newsbot_articles_new_total": "New articles stored.",
    "newsbot_alerts_queued_total": "Alerts written to the outbox.",
    "newsbot_messages_sent_total": "Messages delivered to Telegram, by kind (alert, broadcast).",
    "newsbot_messages_failed_total": "Messages given up on after retries.",
    "newsbot_messages_blocked_total": "Messages cancelled because the chat blocked the bot or is gone.",
    "newsbot_telegram_errors_total": "Telegram API errors by kind (429, 5xx, timeout, 403, 400).",
    "newsbot_errors_total": "Handled errors by stage.",
}


@dataclass
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1


class Metrics:
    def __init__(self) -> None:
        self.started_at = time.time()
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self.histograms: dict[str, Histogram] = {}
        self.last_poll_success: float | None = None

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self.counters[(name, tuple(sorted(labels.items())))] += amount

    def value(self, name: str, **labels: str) -> float:
        return self.counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def observe(self, name: str, seconds: float) -> None:
        self.histograms.setdefault(name, Histogram()).observe(seconds)

    def render(self, gauges: dict[str, float] | None = None) -> str:
        """Prometheus text exposition format 0.0.4."""
        lines: list[str] = []
        by_name: dict[str, list[tuple[tuple[tuple[str, str], ...], float]]] = defaultdict(list)
        for (name, labels), value in sorted(self.counters.items()):
            by_name[name].append((labels, value))
        for name in sorted(set(by_name) | set(HELP)):
            if name in HELP:
                lines.append(f"# HELP {name} {HELP[name]}")
            lines.append(f"# TYPE {name} counter")
            for labels, value in by_name.get(name, [((), 0.0)]):
                lines.append(f"{name}{_labels(labels)} {value:g}")
        for name, hist in sorted(self.histograms.items()):
            lines.append(f"# TYPE {name} histogram")
            cumulative = 0
            for bound, count in zip(hist.buckets, hist.counts, strict=False):
                cumulative += count
                lines.append(f'{name}_bucket{{le="{bound:g}"}} {cumulative}')
            lines.append(f'{name}_bucket{{le="+Inf"}} {hist.n}')
            lines.append(f"{name}_sum {hist.total:g}")
            lines.append(f"{name}_count {hist.n}")
        for name, value in sorted((gauges or {}).items()):
            lines.append(f"# TYPE {name} gauge")
            lines.append(f"{name} {value:g}")
        return "\n".join(lines) + "\n"


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in labels
    )
    return "{" + inner + "}"
