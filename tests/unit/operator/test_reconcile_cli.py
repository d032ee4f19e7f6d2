"""The CLI's flags."""
from __future__ import annotations

import pytest

from sglang_operator.cli import parse_args


def test_namespaces_repeat_and_exclude_all_namespaces():
    a = parse_args(["run", "-n", "a", "--namespace", "b"])
    assert a.namespaces == ["a", "b"] and not a.all_namespaces
    assert parse_args(["run", "--all-namespaces"]).all_namespaces
    with pytest.raises(SystemExit):
        parse_args(["run", "-n", "a", "--all-namespaces"])
    with pytest.raises(SystemExit):
        parse_args(["run"])


def test_leader_election_namespace_defaults(monkeypatch):
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    assert parse_args(["run", "-n", "a", "--leader-elect"]).leader_election_namespace == "a"
    with pytest.raises(SystemExit):
        parse_args(["run", "-A", "--leader-elect"])
    assert parse_args(["run", "-A", "--leader-elect", "--leader-election-namespace", "ops"]).leader_election_namespace == "ops"
