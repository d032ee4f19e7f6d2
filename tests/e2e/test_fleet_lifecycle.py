"""What a user sees of a real fleet run by the helm-installed operator: readiness from the runtime's
/health through the probes to the Ready condition and back, the autoscaler adding and removing real
groups under real load, a rolling update that fails no request, a killed pod restarting its whole
group, and deletion removing everything."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from kubernetes import client

from tests.support import fleet
from tests.support.load import Load, e2e_fleet
from tests.support.waiting import wait_for


def container_pids(pod) -> list[int]:
    """The host pids of a pod's server container (its cgroup, named after the container id)."""
    cid = pod.status.container_statuses[0].container_id.split("://", 1)[1]
    for procs in Path("/sys/fs/cgroup/pids/kubepods").rglob("cgroup.procs"):
        if procs.parent.name == cid:
            return [int(x) for x in procs.read_text().split()]
    raise AssertionError(f"no cgroup for container {cid}")


def ready_column(bed, ns: str, name: str) -> dict[str, str]:
    return fleet.printer_columns(fleet.get_sgld(bed, ns, name))[0]


def test_readiness_flows_from_runtime_health_to_the_ready_condition_and_back(bed, models_dir, ns):
    fleet.apply(bed, ns, e2e_fleet(bed, models_dir, "ready", dp=1))
    fleet.wait_ready(bed, ns, "ready")
    cols = ready_column(bed, ns, "ready")
    assert (cols["READY"], cols["STATUS"]) == ("1", "AllGroupsReady")

    (leader,) = fleet.lws_pods(bed, ns, "ready")
    pids = container_pids(leader)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)  # the runtime stops answering; its process stays
    try:
        obj = fleet.wait_ready(bed, ns, "ready", ready=False, timeout=60)
        assert fleet.condition(obj)["reason"] == "GroupsNotReady"
        cols = ready_column(bed, ns, "ready")
        assert (cols["READY"], cols["STATUS"]) == ("0", "GroupsNotReady")
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    fleet.wait_ready(bed, ns, "ready", timeout=60)
    (again,) = fleet.lws_pods(bed, ns, "ready")
    assert again.metadata.uid == leader.metadata.uid and again.status.container_statuses[0].restart_count == 0


def test_autoscaler_adds_and_removes_real_groups_under_real_load(bed, models_dir, ns):
    doc = e2e_fleet(bed, models_dir, "auto", dp=1, runtime_args=["--max-running-requests", "1"])
    doc["spec"]["autoscaling"] = {
        "enabled": True, "minReplicas": 1, "maxReplicas": 2, "targetPerReplica": 1, "pollIntervalSeconds": 2,
        "scaleUp": {"stabilizationWindowSeconds": 0}, "scaleDown": {"stabilizationWindowSeconds": 20}}
    fleet.apply(bed, ns, doc)
    fleet.wait_ready(bed, ns, "auto")
    url = fleet.service_url(bed, ns, "auto")
    lws = lambda: client.CustomObjectsApi(bed.api_client()).get_namespaced_custom_object(  # noqa: E731
        "leaderworkerset.x-k8s.io", "v1", ns, "leaderworkersets", "auto")
    with Load(url, clients=6, max_new_tokens=64) as load:
        wait_for(lambda: lws()["spec"]["replicas"] == 2, timeout=90, interval=1, what="the autoscaler to add a group")
        wait_for(lambda: fleet.sgld(bed, ns, "auto")["status"].get("readyReplicas") == 2, timeout=240, interval=1,
                 what="the second group to become Ready")
    assert load.failures == [], load.failures[:5]
    # no load: back to one group, but not before the down window
    t_idle = time.monotonic()
    wait_for(lambda: lws()["spec"]["replicas"] == 1, timeout=120, interval=1, what="the autoscaler to remove a group")
    assert time.monotonic() - t_idle >= 15
    wait_for(lambda: len(fleet.lws_pods(bed, ns, "auto")) == 1, timeout=120, interval=1, what="the extra pod to go")
    events = fleet.kubectl(bed, "get", "events", "-n", ns, "--field-selector", "reason=Autoscaled",
                           "-o", "jsonpath={.items[*].message}")
    assert "1 -> 2" in events.replace("→", "->") or "to 2" in events, events


def test_rolling_update_under_load_fails_no_request(bed, models_dir, ns):
    doc = e2e_fleet(bed, models_dir, "roll", dp=2)
    doc["spec"]["rollout"] = {"maxSurge": 1, "maxUnavailable": 0, "drainSeconds": 5}
    fleet.apply(bed, ns, doc)
    fleet.wait_ready(bed, ns, "roll")
    url = fleet.service_url(bed, ns, "roll")
    before = {p.metadata.uid for p in fleet.lws_pods(bed, ns, "roll")}
    # a second tag of the same runtime image, as a release would bring
    image = bed.images["radix-runtime"]
    retagged = image + "-retag"
    bed.ctr("images", "tag", "--force", image, retagged)

    def rolled(pred) -> bool:
        pods = fleet.lws_pods(bed, ns, "roll")
        return (len(pods) == 2 and all(pred(p) for p in pods)
                and all(p.status.container_statuses and p.status.container_statuses[0].ready for p in pods)
                and fleet.condition(fleet.sgld(bed, ns, "roll"), "Progressing").get("reason") == "Complete")

    with Load(url, clients=2) as load:
        time.sleep(3)
        doc["spec"]["runtimeArgs"] = doc["spec"]["runtimeArgs"] + ["--log-level", "info"]
        fleet.apply(bed, ns, doc)
        wait_for(lambda: rolled(lambda p: p.metadata.uid not in before and "info" in p.spec.containers[0].args),
                 timeout=300, interval=1, what="the runtimeArgs rollout")
        doc["spec"]["image"] = retagged
        fleet.apply(bed, ns, doc)
        wait_for(lambda: rolled(lambda p: p.spec.containers[0].image == retagged), timeout=300, interval=1,
                 what="the image rollout")
        time.sleep(3)
    print(f"rolling update under load: sent {load.sent}, succeeded {load.ok}, failed {len(load.failures)}")
    assert load.sent > 20
    assert load.failures == [], load.failures[:5]


def test_killing_one_pod_of_a_tp2_group_restarts_the_group_and_traffic_avoids_it(bed, models_dir, ns):
    fleet.apply(bed, ns, e2e_fleet(bed, models_dir, "tp", tp=2, dp=2))
    fleet.wait_ready(bed, ns, "tp", timeout=420)
    url = fleet.service_url(bed, ns, "tp")
    pods = fleet.lws_pods(bed, ns, "tp")
    group1 = {p.metadata.name: p.metadata.uid for p in pods
              if p.metadata.labels["leaderworkerset.sigs.k8s.io/group-index"] == "1"}
    worker = next(n for n in group1 if n.endswith("-1") and n.count("-") > 1)
    with Load(url, clients=2) as load:
        time.sleep(3)
        client.CoreV1Api(bed.api_client()).delete_namespaced_pod(worker, ns, grace_period_seconds=0)
        # the whole group is recreated: both pods are new
        wait_for(lambda: (now := {p.metadata.name: p.metadata.uid for p in fleet.lws_pods(bed, ns, "tp")
                                  if p.metadata.labels["leaderworkerset.sigs.k8s.io/group-index"] == "1"})
                 and set(now) == set(group1) and not set(now.values()) & set(group1.values()),
                 timeout=60, interval=0.5, what="group 1 to be recreated")
        fleet.wait_ready(bed, ns, "tp", timeout=420)
        wait_for(lambda: fleet.sgld(bed, ns, "tp")["status"].get("readyReplicas") == 2, timeout=300, interval=1,
                 what="both groups Ready again")
        time.sleep(3)
    window = load.longest_failure_window()
    print(f"tp=2 pod kill under load: sent {load.sent}, succeeded {load.ok}, failed {len(load.failures)}, "
          f"longest failure window {window:.1f}s")
    assert load.ok > 10
    # group 0 served throughout: failures only while the Service still pointed at the broken leader
    assert window < 15, load.failures[:5]


def test_deleting_the_deployment_removes_every_pod_service_and_pdb(bed, models_dir, ns):
    fleet.apply(bed, ns, e2e_fleet(bed, models_dir, "gone", dp=1))
    fleet.wait_ready(bed, ns, "gone")
    fleet.kubectl(bed, "delete", "sgld", "gone", "-n", ns, "--wait=true")
    core, policy, apps = (client.CoreV1Api(bed.api_client()), client.PolicyV1Api(bed.api_client()),
                          client.AppsV1Api(bed.api_client()))
    wait_for(lambda: not core.list_namespaced_pod(ns).items and not apps.list_namespaced_stateful_set(ns).items
             and not [s for s in core.list_namespaced_service(ns).items]
             and not policy.list_namespaced_pod_disruption_budget(ns).items,
             timeout=120, interval=1, what="pods, StatefulSets, Services and PDBs to be garbage-collected")
