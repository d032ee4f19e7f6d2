"""Rendering an SGLangDeployment into LeaderWorkerSet, Service and PDB (pure, no cluster)."""
from __future__ import annotations

import copy
import json
import re

import pytest
from hypothesis import given, settings

from radix_runtime.launch_server import parse_args
from sglang_operator.api import InvalidSpec, parse_spec
from sglang_operator.render import desired_replicas, endpoint, render_all, status_selector, with_owner
from sglang_operator.render.engines import LaunchConfig, radix_args, sglang_args
from sglang_operator.render.labels import LWS_WORKER_INDEX_LABEL, selector_string, leader_selector
from tests.unit.operator.strategies import specs


def objs(spec: dict, name: str = "demo"):
    lws, svc, pdb = render_all(name, "ns", spec)
    return lws, svc, pdb


def containers(lws: dict, role: str) -> dict:
    return lws["spec"]["leaderWorkerTemplate"][f"{role}Template"]["spec"]["containers"][0]


def test_kinds_names_and_namespace():
    lws, svc, pdb = objs({"model": {"path": "/m"}})
    assert [(o["apiVersion"], o["kind"]) for o in (lws, svc, pdb)] == [
        ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"),
        ("v1", "Service"),
        ("policy/v1", "PodDisruptionBudget"),
    ]
    assert lws["metadata"]["name"] == "demo" and svc["metadata"]["name"] == "demo-api"
    assert {o["metadata"]["namespace"] for o in (lws, svc, pdb)} == {"ns"}
    assert all("ownerReferences" not in o["metadata"] for o in (lws, svc, pdb))


def test_multinode_group_gets_distributed_flags_from_lws_env():
    lws, _, _ = objs({"model": {"path": "/m"}, "parallelism": {"tp": 16, "gpusPerPod": 8, "dp": 3}})
    spec = lws["spec"]
    assert spec["replicas"] == 3 and spec["leaderWorkerTemplate"]["size"] == 2
    assert spec["startupPolicy"] == "LeaderCreated"
    assert spec["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"
    for role in ("leader", "worker"):
        c = containers(lws, role)
        assert c["command"] == ["python", "-m", "radix_runtime.launch_server"]
        args = c["args"]
        assert args[args.index("--dist-init-addr") + 1] == "$(LWS_LEADER_ADDRESS):20000"
        assert args[args.index("--nnodes") + 1] == "$(LWS_GROUP_SIZE)"
        assert args[args.index("--node-rank") + 1] == "$(LWS_WORKER_INDEX)"
        assert args[args.index("--tp-size") + 1] == "16"
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 8
        assert "sh" not in c["command"][0] and "-c" not in c["command"]


def test_single_pod_group_has_no_rendezvous_flags():
    lws, _, _ = objs({"model": {"path": "/m"}, "parallelism": {"tp": 4}})
    args = containers(lws, "leader")["args"]
    assert "--dist-init-addr" not in args and "--nnodes" not in args
    assert lws["spec"]["leaderWorkerTemplate"]["size"] == 1


def test_upstream_sglang_command_line():
    cfg = LaunchConfig(model_path="meta-llama/Llama-3.1-70B-Instruct", served_name="llama", tp=8, pp=2, group_size=2)
    args = sglang_args(cfg)
    for flag in ("--tp-size", "--pp-size", "--dist-init-addr", "--nnodes", "--node-rank", "--host", "--port",
                 "--enable-metrics", "--model-path", "--served-model-name"):
        assert flag in args
    assert args[args.index("--host") + 1] == "0.0.0.0"
    lws, _, _ = objs({"model": {"path": "/m"}, "engine": "sglang"})
    c = containers(lws, "leader")
    assert c["command"] == ["python3", "-m", "sglang.launch_server"]
    assert c["image"].startswith("lmsysorg/sglang:")
    # Upstream images run as root: no runAsNonRoot, but still no escalation and no capabilities.
    pod = lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]
    assert "runAsNonRoot" not in pod["securityContext"]
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _expand(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' $(VAR) expansion ($$ is a literal $)."""
    def one(a: str) -> str:
        return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), a)
    return [one(a) for a in args]


@pytest.mark.parametrize("rank", [0, 1])
def test_radix_flags_parse_with_the_runtimes_own_argparse(rank):
    path = """/models/my "odd" model $(HOME) $$x"""
    cfg = LaunchConfig(model_path=path, served_name="it's", tp=4, pp=2, group_size=2, shutdown_timeout=60)
    env = {"LWS_LEADER_ADDRESS": "demo-0.demo.ns", "LWS_GROUP_SIZE": "2", "LWS_WORKER_INDEX": str(rank)}
    args = parse_args(_expand(radix_args(cfg), env))
    assert args.model_path == path and args.served_model_name == "it's"
    assert (args.tp_size, args.pp_size, args.nnodes, args.node_rank) == (4, 2, 2, rank)
    assert args.dist_init_addr == "demo-0.demo.ns:20000" and args.host == "0.0.0.0" and args.shutdown_timeout == 60


def test_runtime_args_and_env_are_list_items_never_shell():
    spec = {
        "model": {"path": "/m"},
        "runtimeArgs": ["--chat-template", "a b; rm -rf /", "--x=$(FOO)"],
        "env": [{"name": "A", "value": "x y 'z'"}, {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
    }
    c = containers(objs(spec)[0], "leader")
    assert c["args"][-3:] == ["--chat-template", "a b; rm -rf /", "--x=$(FOO)"]
    assert c["env"] == [{"name": "A", "value": "x y 'z'"}, {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]


def test_service_selects_leaders_only():
    _, svc, pdb = objs({"model": {"path": "/m"}, "service": {"port": 8000, "type": "LoadBalancer"}})
    assert svc["spec"]["selector"] == {"sglangfleet.dev/deployment": "demo", LWS_WORKER_INDEX_LABEL: "0"}
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    assert svc["spec"]["type"] == "LoadBalancer"
    assert pdb["spec"]["selector"]["matchLabels"] == {"sglangfleet.dev/deployment": "demo"}
    assert status_selector("demo") == f"{LWS_WORKER_INDEX_LABEL}=0,sglangfleet.dev/deployment=demo"
    assert status_selector("demo") == selector_string(leader_selector("demo"))
    assert endpoint("demo", "ns", parse_spec({"model": {"path": "/m"}, "service": {"port": 8000}})) == "http://demo-api.ns.svc:8000"


def test_leader_and_worker_probes():
    lws, _, _ = objs({"model": {"path": "/m"}, "parallelism": {"tp": 16}, "probes": {"readiness": {"path": "/ready", "timeoutSeconds": 45}}})
    leader, worker = containers(lws, "leader"), containers(lws, "worker")
    s = leader["startupProbe"]
    assert s["periodSeconds"] * s["failureThreshold"] >= 20 * 60  # minutes of weight loading
    assert leader["readinessProbe"]["httpGet"]["path"] == "/ready" and leader["readinessProbe"]["timeoutSeconds"] == 45
    assert worker["readinessProbe"]["httpGet"]["path"] == "/health" and worker["readinessProbe"]["timeoutSeconds"] == 45
    assert leader["livenessProbe"]["httpGet"]["path"] == "/health"
    assert leader["livenessProbe"]["timeoutSeconds"] > 20  # above the server's own 20 s check
    default = containers(objs({"model": {"path": "/m"}})[0], "leader")
    assert default["readinessProbe"]["httpGet"]["path"] == "/health_generate"


def test_pod_basics_shm_volume_drain_security():
    spec = {
        "model": {"path": "/models/x", "volume": {"persistentVolumeClaim": {"claimName": "models"}, "mountPath": "/models"}},
        "resources": {"sharedMemory": "32Gi", "requests": {"cpu": 8}},
        "rollout": {"drainSeconds": 20, "terminationGracePeriodSeconds": 200},
    }
    lws, _, _ = objs(spec)
    pod = lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]
    c = pod["containers"][0]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "32Gi"}} in pod["volumes"]
    assert {"name": "model", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}} in pod["volumes"]
    assert {"name": "model", "mountPath": "/models", "readOnly": True} in c["volumeMounts"]
    assert c["lifecycle"] == {"preStop": {"sleep": {"seconds": 20}}} and pod["terminationGracePeriodSeconds"] == 200
    assert c["args"][c["args"].index("--shutdown-timeout") + 1] == str(200 - 20 - 5)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["resources"] == {"limits": {"nvidia.com/gpu": 1}, "requests": {"cpu": 8}}


def test_user_gpu_count_wins_and_requested_extended_resources_become_limits():
    lws, _, _ = objs({"model": {"path": "/m"}, "resources": {"limits": {"nvidia.com/gpu": 0}, "requests": {"rdma/ib": 1}}})
    assert containers(lws, "leader")["resources"]["limits"] == {"nvidia.com/gpu": 0, "rdma/ib": 1}


def test_autoscaled_replicas_stay_within_bounds():
    s = parse_spec({"model": {"path": "/m"}, "parallelism": {"dp": 10}, "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 5}})
    assert desired_replicas(s) == 5
    assert desired_replicas(s, current=1) == 2 and desired_replicas(s, current=3) == 3
    assert objs(s.to_api())[0]["spec"]["replicas"] == 5
    off = parse_spec({"model": {"path": "/m"}, "parallelism": {"dp": 3}})
    assert desired_replicas(off, current=7) == 3


def test_owner_references_only_with_owner_uid():
    lws = objs({"model": {"path": "/m"}})[0]
    owned = with_owner(lws, {"name": "demo", "uid": "1234"})
    assert owned["metadata"]["ownerReferences"] == [
        {"apiVersion": "sglangfleet.dev/v1alpha1", "kind": "SGLangDeployment", "name": "demo", "uid": "1234",
         "controller": True, "blockOwnerDeletion": True}
    ]
    assert "ownerReferences" not in lws["metadata"]  # input untouched
    with pytest.raises(ValueError, match="uid"):
        with_owner(lws, {"name": "demo"})


def test_group_topology_key_becomes_exclusive_placement():
    lws = objs({"model": {"path": "/m"}, "scheduling": {"groupTopologyKey": "topology.kubernetes.io/rack"}})[0]
    assert lws["metadata"]["annotations"] == {"leaderworkerset.sigs.k8s.io/exclusive-topology": "topology.kubernetes.io/rack"}


def test_bad_name_or_spec_is_rejected_before_rendering():
    with pytest.raises(InvalidSpec, match="metadata.name"):
        render_all("Bad_Name", "ns", {"model": {"path": "/m"}})
    with pytest.raises(InvalidSpec, match="spec.parallelism.tp"):
        render_all("ok", "ns", {"model": {"path": "/m"}, "parallelism": {"tp": 0}})


@settings(max_examples=150, deadline=None)
@given(specs())
def test_rendering_is_deterministic_and_pure(spec):
    before = copy.deepcopy(spec)
    first = json.dumps(render_all("demo", "ns", spec))
    assert json.dumps(render_all("demo", "ns", copy.deepcopy(spec))) == first
    assert json.dumps(render_all("demo", "ns", parse_spec(spec))) == first
    assert spec == before
    lws = json.loads(first)[0]
    s = parse_spec(spec)
    assert lws["spec"]["leaderWorkerTemplate"]["size"] * s.parallelism.effective_gpus_per_pod == s.parallelism.tp * s.parallelism.pp
    assert containers(lws, "leader")["args"][1] == s.model.path.replace("$", "$$")
