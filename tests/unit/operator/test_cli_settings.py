"""The CLI's flags, and the one Settings object they build (environment variables as defaults)."""
from __future__ import annotations

import pytest

from sglang_operator.cli import parse_settings
from sglang_operator.settings import AutoscalerSettings


def test_namespaces_repeat_and_exclude_all_namespaces():
    s = parse_settings(["run", "-n", "a", "--namespace", "b"])
    assert s.namespaces == ("a", "b") and not s.all_namespaces
    assert parse_settings(["run", "--all-namespaces"]).all_namespaces
    with pytest.raises(SystemExit):
        parse_settings(["run", "-n", "a", "--all-namespaces"])
    with pytest.raises(SystemExit):
        parse_settings(["run"])


def test_leader_election_namespace_defaults(monkeypatch):
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    assert parse_settings(["run", "-n", "a"]).leader_election is None
    assert parse_settings(["run", "-n", "a", "--leader-elect"]).leader_election.namespace == "a"
    with pytest.raises(SystemExit):
        parse_settings(["run", "-A", "--leader-elect"])
    le = parse_settings(["run", "-A", "--leader-elect", "--leader-election-namespace", "ops"]).leader_election
    assert le.namespace == "ops" and le.name == "sglang-operator" and le.identity


def test_the_charts_environment_fills_the_defaults(monkeypatch):
    monkeypatch.setenv("POD_NAMESPACE", "ops")
    monkeypatch.setenv("POD_NAME", "sglang-operator-abc")
    monkeypatch.setenv("SGLANG_OPERATOR_AUTOSCALER_TOLERANCE", "0.2")
    s = parse_settings(["run", "-A", "--leader-elect", "--resync-seconds=60"])
    assert (s.leader_election.namespace, s.leader_election.identity) == ("ops", "sglang-operator-abc")
    assert s.resync_seconds == 60 and s.autoscaler == AutoscalerSettings(tolerance=0.2)
    flagged = parse_settings(["run", "-A", "--autoscaler-tolerance=0", "--autoscaler-idle-interval=5"])
    assert (flagged.autoscaler.tolerance, flagged.autoscaler.idle_interval) == (0.0, 5.0)  # a flag beats the env


def test_defaults():
    s = parse_settings(["run", "-A"])
    assert (s.resync_seconds, s.watch_timeout, s.metrics_port, s.log_format) == (300, None, 8000, "json")


def test_workers_size_the_pass_threads_and_reject_nonsense(capsys):
    assert parse_settings(["run", "-A"]).workers == 24
    assert parse_settings(["run", "-A", "--workers=4"]).workers == 4
    with pytest.raises(SystemExit):
        parse_settings(["run", "-A", "--workers=0"])
    assert "--workers: must be at least 1, got 0" in capsys.readouterr().err
