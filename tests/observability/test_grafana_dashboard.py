"""The shipped Grafana dashboard loads: every query parses (promtool), names only metrics
the code exports, and returns data from real scrapes of a worker, the exporter and the
operator (promtool's rule tests evaluate it)."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import run_mixed_outcomes
from kubetaskqueue.metrics import QueueStateCollector
from kubetaskqueue_operator.metrics import PrometheusMetrics
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

DASHBOARD = (Path(__file__).resolve().parents[2] / "charts" / "kubetaskqueue" / "dashboards"
             / "kubetaskqueue.json")
# What Grafana puts in for its variables when it runs a query ("All" topics and pools).
VARIABLES = {"$__rate_interval": "5m", "$topic": ".*", "$workerpool": ".*"}
LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),)?\s*(?P<label>\w+)\s*\)$")

_TOKEN = re.compile(r"""
    "(?:\\.|[^"\\])*" | '(?:\\.|[^'\\])*' | `[^`]*`  # strings
  | \[[^\]]*\]                                    # ranges and subqueries: [5m], [1h:1m]
  | [0-9][0-9.]*(?:[eE][+-]?[0-9]+)?[a-z]*          # numbers and durations
  | [A-Za-z_:][A-Za-z0-9_:]*                        # names, functions, keywords
  | \S
""", re.VERBOSE)
# Words that are never a metric name: operators, modifiers, grouping, special numbers.
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
             "group_left", "group_right", "inf", "nan", "atan2"}
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: bare names and {__name__="..."}."""
    tokens = [m.group() for m in _TOKEN.finditer(expr)]
    names: set[str] = set()
    braces = 0
    i = 0
    while i < len(tokens):
        text, following = tokens[i], tokens[i + 1] if i + 1 < len(tokens) else ""
        if text in ("{", "}"):
            braces += 1 if text == "{" else -1
        elif braces:  # label matchers: only __name__ names a metric
            if text == "__name__" and following == "=":
                names.add(tokens[i + 2][1:-1])
        elif re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
            word = text.lower()
            if word in _GROUPING and following == "(":
                i = tokens.index(")", i)  # skip the label list (it holds no parentheses)
            elif word not in _KEYWORDS and following != "(" and \
                    following.lower() not in ("by", "without"):  # not a function or aggregation
                names.add(text)
        i += 1
    return names


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too, rows themselves left out."""
    out = []
    for panel in dash["panels"]:
        out += [panel] if panel["type"] != "row" else panel.get("panels", [])
    return out


def substitute(expr: str) -> str:
    for name in sorted(VARIABLES, key=len, reverse=True):  # $topic is not $topics
        expr = expr.replace(name, VARIABLES[name])
    assert "$" not in expr, f"a variable the test does not know in {expr!r}: add it to VARIABLES"
    return expr


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable's selector."""
    dash = dashboard()
    found = [(f"panel {p['title']!r} target {t['refId']}", substitute(t["expr"]))
             for p in panels(dash) for t in p["targets"]]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            match = LABEL_VALUES.match(var["query"]["query"])
            assert match and match["selector"], f"variable {var['name']}: not label_values(m, l)"
            found.append((f"variable {var['name']}", substitute(match["selector"])))
    return found


@pytest.fixture(scope="module")
def scrapes() -> str:
    """The /metrics text of a worker that ran tasks, the queue-state exporter on its
    Redis, and the operator after one round: what a Prometheus would have."""
    m = run_mixed_outcomes(f"memory://grafana-{uuid.uuid4().hex}", "email")
    exporter = CollectorRegistry()
    exporter.register(QueueStateCollector(m.store.client, m.settings.namespace))
    operator = CollectorRegistry()
    metrics = PrometheusMetrics(operator)
    metrics.replicas("jobs/workers", desired=3, current=2, max_replicas=10)
    metrics.scaled("jobs/workers", "up")
    return "".join(generate_latest(r).decode() for r in (m.metrics.registry, exporter, operator))


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value)
            for family in text_string_to_metric_families(text) for s in family.samples]


def test_metric_names_finds_selectors_not_functions_labels_or_keywords() -> None:
    expr = ('sum by (topic, le) (rate(a_total{event="x", topic=~"$t"}[5m] offset 1m)) '
            '/ on (topic) group_left () b or histogram_quantile(0.95, c_bucket) > bool 1e3 '
            'unless {__name__="d", job="j"} and sum(e) without (instance) * Inf')
    assert metric_names(expr) == {"a_total", "b", "c_bucket", "d", "e"}
    assert metric_names("max(kubetaskqueue_redis_up) == 0") == {"kubetaskqueue_redis_up"}


def test_the_dashboard_has_its_variables_and_panels() -> None:
    dash = dashboard()
    assert dash["uid"] == "kubetaskqueue" and dash["title"] == "kubetaskqueue"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["topic"]["multi"] and variables["topic"]["includeAll"]
    every = panels(dash)
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    for panel in every:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
    # What the dashboard is for: each of these metrics is shown.
    shown = set().union(*(metric_names(q) for _, q in queries()))
    assert {"kubetaskqueue_queue_tasks", "kubetaskqueue_queue_oldest_task_age_seconds",
            "kubetaskqueue_queue_events_total", "kubetaskqueue_dead_oldest_task_age_seconds",
            "kubetaskqueue_worker_slots", "kubetaskqueue_operator_desired_replicas",
            "kubetaskqueue_operator_current_replicas", "kubetaskqueue_task_errors_total",
            "kubetaskqueue_tasks_processed_total"} <= shown
    # Per-topic panels follow the topic variable.
    for where, query in queries():
        if "topic" in query and "kubetaskqueue_worker_slots" not in query \
                and "operator" not in query and where.startswith("panel"):
            assert 'topic=~".*"' in query, where


def test_every_query_parses(promtool: str, tmp_path: Path) -> None:
    found = queries()
    rules = {"groups": [{"name": "grafana-dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": query} for i, (_, query) in enumerate(found)]}]}
    path = tmp_path / "dashboard_rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(found)} rules found" in result.stdout


def test_every_metric_a_query_names_is_exported(scrapes: str) -> None:
    exported = {name for name, _, _ in samples(scrapes)}
    missing = {where: sorted(metric_names(query) - exported) for where, query in queries()}
    assert {where: names for where, names in missing.items() if names} == {}
    labels = {(name, label) for name, labelset, _ in samples(scrapes) for label in labelset}
    for var in dashboard()["templating"]["list"]:
        if var["type"] == "query":
            match = LABEL_VALUES.match(var["query"]["query"])
            assert match and (match["selector"], match["label"]) in labels, var["name"]


def test_the_name_check_fails_on_a_metric_that_does_not_exist(scrapes: str) -> None:
    exported = {name for name, _, _ in samples(scrapes)}
    typo = 'sum by (topic) (kubetaskqueue_queue_task{state="input"})'
    assert metric_names(typo) - exported == {"kubetaskqueue_queue_task"}


def test_every_query_returns_data_from_real_scrapes(promtool: str, scrapes: str,
                                                    tmp_path: Path) -> None:
    """A label value no code exports (state="ready", outcome="dead") empties a query: this
    catches it where the name check cannot. Each sample becomes a series that grows by one
    a minute, so rate() and histogram_quantile() have something to work on."""
    series = [{"series": name + ("{" + ", ".join(f"{k}={json.dumps(v)}"
                                                   for k, v in sorted(labels.items())) + "}"
                                 if labels else ""),
               "values": f"{value:g}+1x30"}
              for name, labels, value in samples(scrapes)]
    found = queries()
    tests = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series,
        "promql_expr_test": [{"expr": f"absent({query})", "eval_time": "20m", "exp_samples": []}
                             for _, query in found]}]}
    path = tmp_path / "dashboard_test.yaml"
    path.write_text(yaml.safe_dump(tests, width=1000))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
