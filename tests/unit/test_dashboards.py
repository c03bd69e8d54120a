"""The Grafana dashboard and the Prometheus alert rules in docs/: they parse, and every metric they
name is one the code exports (a renamed metric breaks this test, not an operator's dashboard)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from worker.metrics import Metrics

DOCS = Path(__file__).resolve().parents[2] / "docs"
# PromQL words that are not metric names (functions are recognised by the "(" after them).
KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
}
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported() -> set[str]:
    """Every series name the metrics registry can produce."""
    names = set()
    for family in Metrics().registry.collect():
        names |= {family.name + suffix for suffix in _SUFFIXES[family.type]}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (a small PromQL tokenizer: strings, label matchers,
    ranges, grouping clauses and Grafana variables removed; functions are followed by "(")."""
    for opening, closing in ("()", "[]", "{}"):
        assert expr.count(opening) == expr.count(closing), f"unbalanced {opening}{closing}: {expr}"
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word, after = match.group(), text[match.end() :].lstrip()[:1]
        if after == "(" or word in KEYWORDS:
            continue
        names.add(word)
    return names


def test_the_tokenizer_finds_metric_names_and_nothing_else() -> None:
    expr = (
        'sum by (provider, client) (rate(a_total{status=~"5xx|auth"}[10m])) / on() (max(b) or vector(0)) > 0'
        " and histogram_quantile(0.95, sum by (le) (rate(c_bucket[$__rate_interval])))"
    )
    assert metric_names(expr) == {"a_total", "b", "c_bucket"}


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((DOCS / "prometheus-alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_alert_rules_parse_and_name_only_exported_metrics() -> None:
    rules = _rules()
    known = exported()
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("info", "warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        named = metric_names(rule["expr"])
        assert named and named <= known, f"{rule['alert']}: {named - known}"
    alerts = {rule["alert"] for rule in rules}
    # What the issue asks for: a growing dead-letter count, a stalled queue, a failing connection.
    assert {"CwiDeadLettersGrowing", "CwiQueueStalled", "CwiConnectionFailing"} <= alerts


def test_the_dashboard_parses_and_names_only_exported_metrics() -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    known = exported()
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels and len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    shown = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            named = metric_names(target["expr"])
            assert named and named <= known, f"{panel['title']}: {named - known}"
            shown |= named
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            metric = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["definition"])
            assert metric is not None and metric.group(1) in known, variable["definition"]
    # The panels cover the bus, the worker's outcomes and the ERPs per connection.
    assert {"cwi_bus_messages", "cwi_worker_completed_total", "cwi_erp_request_seconds_bucket"} <= shown
    assert {"cwi_erp_rate_limited_total", "cwi_erp_rate_wait_seconds_total"} <= shown
