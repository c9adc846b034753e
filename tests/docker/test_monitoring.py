"""Alert rules and the dashboard watch metrics the code really exports."""

from __future__ import annotations

import json
import re

import yaml

from tests.docker.manifests import DASHBOARD, ROOT, RULES, by_kind

METRIC = re.compile(r"\bparley_[a-z0-9_]+")
DECLARED = re.compile(r"(?:Counter|Gauge|Histogram|Summary)\(\s*\"(parley_[a-z0-9_]+)\"", re.S)
SUFFIXES = ("_bucket", "_count", "_sum")


def exported() -> set[str]:
    names: set[str] = set()
    for package in ("gateway", "streams", "persistence"):
        for path in (ROOT / package).rglob("*.py"):
            names |= set(DECLARED.findall(path.read_text()))
    return names


def referenced(expr: str) -> set[str]:
    found = set()
    for name in METRIC.findall(expr):
        for suffix in SUFFIXES:
            if name.endswith(suffix) and name[: -len(suffix)] in exported():
                name = name[: -len(suffix)]
        found.add(name)
    return found


def rules() -> list[dict]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def test_the_operator_rule_carries_the_plain_rules() -> None:
    plain = yaml.safe_load(RULES.read_text())["groups"]
    assert by_kind("PrometheusRule")["parley"]["spec"]["groups"] == plain


def test_the_metrics_finder_finds_the_new_ones() -> None:
    assert {
        "parley_relay_outbox_backlog",
        "parley_relay_outbox_oldest_age_seconds",
        "parley_relay_publish_outages_total",
        "parley_worker_consumer_lag",
        "parley_gateway_end_to_end_seconds",
    } <= exported()


def test_every_alert_names_real_metrics_and_says_what_to_do() -> None:
    known = exported()
    alerts = rules()
    assert len({rule["alert"] for rule in alerts}) == len(alerts)
    for rule in alerts:
        names = referenced(rule["expr"])
        # Prometheus' own `up`, for Parley's scrape jobs (the ServiceMonitor's Services).
        assert names or rule["expr"].startswith('up{job=~"parley-'), rule["alert"]
        assert names <= known, (rule["alert"], names - known)
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    watched = set().union(*(referenced(rule["expr"]) for rule in alerts))
    for metric in (
        "parley_relay_outbox_oldest_age_seconds",
        "parley_relay_publish_outages_total",
        "parley_worker_consumer_lag",
        "parley_gateway_end_to_end_seconds",
    ):
        assert metric in watched


def test_dashboard_panels_query_real_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    known = exported()
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 10
    for expr in exprs:
        assert referenced(expr) and referenced(expr) <= known, expr
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
