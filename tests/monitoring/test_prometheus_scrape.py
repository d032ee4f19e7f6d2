"""The chart's PromQL against real data: a real Prometheus (the pinned build) scrapes a real
radix_runtime server and the operator's metrics, with the chart's rules loaded; after some traffic
every dashboard query returns series, every alert rule evaluates without error, every series an
alert reads exists with the labels it sums by, and the group restart shows on its panel and fires
SGLangGroupRestarting (its threshold lowered to one restart).

The scrape configs are the chart's monitors turned into plain Prometheus config: the runtime's
target carries the pod labels Kubernetes service discovery would give a leader pod and goes through
the PodMonitor's own relabelings (so the labels the queries group by come from the chart, not from
this test); the operator's job honors labels as the ServiceMonitor says.

The operator's side is tests/monitoring/operator_metrics.py: its reconciler and autoscaler over an
in-memory API, the autoscaler scraping the same runtime server.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.net import free_port
from tests.support.process import terminate
from tests.support.server import REPO, RuntimeServer
from tests.support.waiting import wait_for

from .chart import alerts, dashboard_queries, helm, one, prometheus_tools, render, rule_groups

pytestmark = pytest.mark.runtime

RATE_INTERVAL = "20s"  # Grafana's $__rate_interval here: 20 scrapes at 1 s
# What Kubernetes service discovery says of a leader pod of SGLangDeployment "tiny", group 0.
POD_META = {"__meta_kubernetes_pod_name": "tiny-0",
            "__meta_kubernetes_pod_label_sglangfleet_dev_deployment": "tiny",
            "__meta_kubernetes_pod_label_sglangfleet_dev_engine": "radix",
            "__meta_kubernetes_pod_label_leaderworkerset_sigs_k8s_io_group_index": "0",
            "namespace": "serving", "pod": "tiny-0"}


def relabel_configs(monitor_relabelings: list[dict]) -> list[dict]:
    """A Prometheus Operator relabeling (camelCase) as a relabel_config."""
    names = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return [{names.get(k, k): v for k, v in r.items()} for r in monitor_relabelings]


class Prometheus:
    def __init__(self, workdir: Path, config: dict, rules: dict):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (workdir / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
        (workdir / "prometheus.yaml").write_text(yaml.safe_dump({**config, "rule_files": ["rules.yaml"]}))
        self._log = open(workdir / "prometheus.log", "wb")
        self.log_path = workdir / "prometheus.log"
        self.proc = subprocess.Popen(
            [str(prometheus_tools().prometheus), f"--config.file={workdir / 'prometheus.yaml'}",
             f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=workdir)

    def api(self, path: str, **params) -> dict | list:
        url = f"{self.url}/api/v1/{path}"
        r = httpx.post(url, data=params, timeout=10) if params else httpx.get(url, timeout=10)
        body = r.json()
        assert body.get("status") == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        terminate(self.proc, 20)
        self._log.close()


@pytest.fixture(scope="module")
def scraped(tiny_model, tmp_path_factory):
    """Prometheus once it has scraped both targets through a group restart and some traffic, and
    the rates have data.

    The restart is what Kubernetes would show: group 0's leader process is replaced by a new one at
    another address (a recreated pod gets a new IP; its name stays), and service discovery (a file
    here) swaps the target."""
    work = tmp_path_factory.mktemp("monitoring")
    docs = render(helm(), "--set", "monitoring.rules.groupRestarts=1")  # so the one restart alerts
    pod_endpoint = one(docs, "PodMonitor")["spec"]["podMetricsEndpoints"][0]
    op_endpoint = one(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    started = []
    try:
        first = RuntimeServer(tiny_model, ["--max-running-requests", "2"], work / "runtime-first.log")
        started.append(first.stop)
        time.sleep(0.5)  # the two processes' start times differ
        # the new leader decodes speculatively (its own weights as the draft: every draft accepted)
        runtime = RuntimeServer(tiny_model, ["--max-running-requests", "2", "--speculative-algorithm", "STANDALONE",
                                             "--speculative-draft-model-path", str(tiny_model),
                                             "--speculative-num-steps", "3"], work / "runtime.log")
        started.append(runtime.stop)
        op_port = free_port()
        op = subprocess.Popen([sys.executable, "-m", "tests.monitoring.operator_metrics", "--port", str(op_port),
                               "--runtime-port", str(runtime.port), "--dead-port", str(free_port())],
                              cwd=REPO, stdout=open(work / "operator.log", "wb"), stderr=subprocess.STDOUT)
        started.append(lambda: terminate(op, 10))
        first.wait_ready()
        targets = work / "runtime-targets.json"
        discover(targets, first)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "runtime", "metrics_path": pod_endpoint["path"],
                 "file_sd_configs": [{"files": [str(targets)]}],
                 "relabel_configs": relabel_configs(pod_endpoint["relabelings"])},
                {"job_name": "operator", "metrics_path": op_endpoint["path"],
                 "honor_labels": op_endpoint["honorLabels"],
                 "static_configs": [{"targets": [f"127.0.0.1:{op_port}"], "labels": {"namespace": "sglang-system"}}]},
            ]}
        prom = Prometheus(work, config, {"groups": rule_groups(docs)})
        started.append(prom.stop)
        wait_for(lambda: len(prom.query("up == 1")) == 2, 60, interval=0.2, what="both targets up",
                 ignore=lambda e: isinstance(e, (httpx.TransportError, json.JSONDecodeError)))
        runtime.wait_ready()
        wait_for(lambda: prom.query("count_over_time(process_start_time_seconds{deployment='tiny'}[1m]) >= 2"),
                 30, interval=0.2, what="two scrapes of the first leader")
        discover(targets, runtime)  # the group restarts: a new leader process at a new address
        first.stop()
        # discovery passes changes on every 5 s: the traffic starts once the new leader is scraped
        wait_for(lambda: prom.query("changes(process_start_time_seconds{deployment='tiny'}[1m]) > 0"),
                 30, interval=0.2, what="a scrape of the new leader")
        traffic(runtime)
        # every rate() window needs a few samples after the traffic, and every rule its evaluations
        wait_for(lambda: prom.query("sum(rate(sglang:generation_tokens_total[20s])) > 0"
                                    " and sum(rate(sglang_operator_reconcile_errors_total[20s])) > 0"
                                    " and count(sglang_operator_autoscaler_scales_total) > 0"),
                 60, interval=0.5, what="rates of the traffic and of the operator's passes")
        time.sleep(3)
        yield prom
    except BaseException:
        for log in sorted(work.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        for stop in reversed(started):
            stop()


def discover(path: Path, server: RuntimeServer) -> None:
    """File service discovery: `server` is now the leader pod tiny-0 (an atomic replace)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"targets": [f"127.0.0.1:{server.port}"], "labels": POD_META}]))
    tmp.replace(path)


def traffic(runtime: RuntimeServer) -> None:
    """16 requests sharing a prefix, 8 at a time against 2 running slots: a queue, cache hits,
    many decode steps."""
    prefix = list(range(10, 200))
    sp = {"max_new_tokens": 24, "temperature": 0, "ignore_eos": True}

    def send(i: int) -> None:
        r = httpx.post(runtime.url + "/generate", json={"input_ids": prefix + [300 + i], "sampling_params": sp},
                       timeout=120)
        assert r.status_code == 200, r.text

    send(0)  # the prefix enters the cache
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(1, 16)))


def values(result: list[dict]) -> list[float]:
    return [float(r["value"][1]) for r in result]


def test_every_dashboard_query_returns_series(scraped):
    empty = [name for name, expr in dashboard_queries(RATE_INTERVAL) if not scraped.query(expr)]
    assert not empty, f"dashboard queries without data: {empty}"


def test_dashboard_panels_show_the_traffic(scraped):
    q = dict(dashboard_queries("1m"))
    tokens = values(scraped.query(q["Tokens per second [A]"]))
    assert tokens and tokens[0] > 0
    for panel in ("Time to first token [C]", "Inter-token latency [C]"):
        (p99,) = values(scraped.query(q[panel]))
        assert 0 < p99 < 60, panel
    (hit,) = values(scraped.query(q["Prefix cache hit rate per group [A]"]))
    assert 0.5 < hit <= 1  # 15 of 16 prompts reuse 190 of their 191 tokens
    (group,) = scraped.query(q["Requests waiting per group [A]"])
    assert group["metric"] == {"namespace": "serving", "deployment": "tiny", "group": "0"}
    accept_rate, accept_length = (values(scraped.query(q[f"Speculative decoding [{r}]"])) for r in "AB")
    assert accept_rate == [1.0] and 3 < accept_length[0] <= 4  # up to 3 drafts + the target's own token
    (restarts,) = scraped.query(q["Group restarts (last hour) [A]"])
    # one series across both processes (instance is the pod's name, not its address), one restart
    assert restarts["metric"] == {"namespace": "serving", "deployment": "tiny", "group": "0"}
    assert float(restarts["value"][1]) == 1
    (serving,) = values(scraped.query(q["Groups: wanted and serving [B]"]))
    assert serving == 1
    errors = scraped.query(q["Reconcile errors per second [A]"])
    assert {r["metric"]["reason"] for r in errors} == {"LeaderWorkerSetMissing"}
    (desired,) = scraped.query(q["Groups: wanted and serving [A]"])
    assert desired["metric"] == {"namespace": "serving", "deployment": "tiny"}  # honor_labels kept it


def _selectors(node) -> list[str]:
    """Every series selector in a parsed query (Prometheus's /api/v1/parse_query tree), as PromQL."""
    if isinstance(node, list):
        return [s for n in node for s in _selectors(n)]
    if not isinstance(node, dict):
        return []
    if node.get("type") in ("vectorSelector", "matrixSelector"):  # a range selector, [range] offset dropped
        return ["{" + ", ".join(f'{m["name"]}{m["type"]}{json.dumps(m["value"])}' for m in node["matchers"]) + "}"]
    return [s for v in node.values() for s in _selectors(v)]


def test_every_alert_evaluates_and_reads_series_that_exist(scraped):
    rules = {r["name"]: r for g in scraped.api("rules")["groups"] for r in g["rules"]}
    expected = alerts(rule_groups(render(helm())))  # the defaults: the same series, other thresholds
    assert set(rules) == set(expected)
    for name, rule in rules.items():
        assert rule["health"] == "ok" and not rule.get("lastError"), (name, rule)
        assert rule["lastEvaluation"] > "2000", (name, rule["lastEvaluation"])
        selectors = set(_selectors(scraped.api("parse_query", query=expected[name])))
        grouped_by = {label.strip() for clause in re.findall(r"by \(([^)]*)\)", expected[name])
                      for label in clause.split(",")}
        assert selectors and grouped_by, name
        for selector in selectors:
            series = scraped.query(f"last_over_time({selector}[5m])")
            assert series, f"{name}: no series {selector}"
            # the labels it sums by are on the series (the monitors' relabelings and honorLabels);
            # the operator's process_start_time_seconds lacks them, and the alert's join drops it
            assert any(grouped_by <= s["metric"].keys() for s in series), (name, selector, series)
    # the restart alerts (its threshold is 1 here); the rest stay quiet
    firing = [(a["labels"]["alertname"], a["labels"].get("group")) for a in scraped.api("alerts")["alerts"]
              if a["state"] == "firing"]
    assert firing == [("SGLangGroupRestarting", "0")]
