"""docs/grafana-dashboard.json is a dashboard Grafana imports, and every metric its queries
name is one newsbot's /metrics exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bot.metrics import GAUGES, Metrics

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json"
PROMQL_WORDS = {"sum", "by", "increase", "rate", "histogram_quantile", "le", "lane", "feed"}


def exported_names() -> set[str]:
    """Every series name the exposition text has: counters and histograms from their TYPE
    lines, gauges (given values at each scrape) from bot.metrics.GAUGES."""
    text = Metrics().render({}).decode()
    names: set[str] = set(GAUGES)
    for kind, name in ((m[2], m[1]) for m in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.M)):
        if kind == "counter":
            names.add(name if name.endswith("_total") else f"{name}_total")
        elif kind == "histogram":
            names.update(f"{name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
        else:
            names.add(name)
    return names


def test_dashboard_shape_and_metric_names() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(dashboard["title"], str) and dashboard["uid"] and isinstance(dashboard["schemaVersion"], int)
    panels = dashboard["panels"]
    assert {p["id"] for p in panels} == set(range(1, len(panels) + 1))
    exported = exported_names()
    used: set[str] = set()
    for panel in panels:
        assert panel["type"] and panel["title"] and set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", target["expr"])  # label matchers, ranges
            used |= {w for w in re.findall(r"[a-z_][a-z0-9_]*", expr) if w not in PROMQL_WORDS}
    assert used <= exported, used - exported
    assert {"newsbot_lane_messages_sent_total", "newsbot_alert_latency_seconds_bucket",
            "newsbot_feeds_failing", "newsbot_last_poll_age_seconds", "newsbot_outbox_backlog"} <= used
