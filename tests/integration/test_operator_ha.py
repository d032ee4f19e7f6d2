"""High availability: two operators with Lease-based leader election on one object. Only the leader
acts; no write flaps between them; killing the leader hands over within the lease duration."""
from __future__ import annotations

import time

import pytest
from kubernetes import client

from tests.support.kube import Api, resource_versions, wait_for_api
from tests.support.operator import Operator, example

from .pods import create_group, pdb_counted

pytestmark = pytest.mark.cluster

LEASE = ("--lease-duration=4", "--renew-deadline=3", "--retry-period=1")


def test_two_replicas_one_leader_no_fighting_and_failover(cluster, api_client, namespace, tmp_path):
    api = Api(api_client, namespace)
    coord = client.CoordinationV1Api(api_client)
    ops = [Operator(cluster.kubeconfig, tmp_path, "-n", namespace, "--leader-elect", *LEASE, name=f"replica{i}")
           for i in range(2)]
    try:
        holder = wait_for_api(lambda: coord.read_namespaced_lease("sglang-operator", namespace).spec.holder_identity,
                          what="a leader")
        leader_gauge = lambda op: op.metric_sum("sglang_operator_leader")  # noqa: E731
        wait_for_api(lambda: sorted(leader_gauge(op) for op in ops) == [0, 1], what="exactly one leader")
        leader, standby = sorted(ops, key=leader_gauge, reverse=True)

        api.create(example("ha"))
        wait_for_api(lambda: all(api.children("ha").values()) and api.condition("ha", "Ready"), what="convergence")
        pods = create_group(api, "ha", 0, ready=True)
        api.patch_lws_status("ha", {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1})
        wait_for_api(lambda: api.condition("ha", "Ready")["status"] == "True", what="Ready")
        pdb_counted(api, "ha", pods)

        # Steady state with both running: nothing changes, and only the leader ever reconciled.
        before = resource_versions(api, "ha")
        time.sleep(6)
        assert resource_versions(api, "ha") == before
        assert leader.metric_sum("sglang_operator_reconciles_total") > 0
        assert standby.metric_sum("sglang_operator_reconciles_total") == 0
        assert standby.metric_sum("sglang_operator_api_writes_total") == 0
        managers = {m["manager"] for m in api.lws("ha")["metadata"]["managedFields"]}
        assert "sglang-operator" in managers

        # Failover: the leader dies without releasing; the standby takes over after the lease expires.
        leader.kill()
        t0 = time.monotonic()
        wait_for_api(lambda: coord.read_namespaced_lease("sglang-operator", namespace).spec.holder_identity != holder,
                 timeout=15, what="the standby to take the lease")
        api.patch_sgld("ha", {"spec": {"parallelism": {"dp": 2}}})
        wait_for_api(lambda: api.lws("ha")["spec"]["replicas"] == 2, timeout=15, what="the new leader to reconcile")
        takeover = time.monotonic() - t0
        assert takeover < 15, takeover
        assert standby.metric_sum("sglang_operator_leader") == 1
        lease = coord.read_namespaced_lease("sglang-operator", namespace)
        assert lease.spec.lease_transitions >= 1
    finally:
        api.delete_all_sglds()
        for op in ops:
            if op.alive():
                op.stop()
