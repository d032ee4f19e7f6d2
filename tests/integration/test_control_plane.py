"""The test bed is real: objects persist, server-side validation runs, garbage collection works."""
from __future__ import annotations

import time

import pytest
from kubernetes import client, dynamic
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.cluster


def lws_body(name: str, size: int) -> dict:
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "leaderWorkerTemplate": {
                "size": size,
                "workerTemplate": {"spec": {"containers": [{"name": "w", "image": "busybox"}]}},
            },
        },
    }


def test_version_is_the_pinned_one(cluster, api_client):
    from tests.cluster.controlplane import read_versions

    info = client.VersionApi(api_client).get_code()
    assert info.git_version == read_versions()["KUBERNETES_VERSION"]
    out = cluster.kubectl("version", "-o", "json").stdout
    assert read_versions()["KUBERNETES_VERSION"] in out


def test_namespace_and_configmap_round_trip(api_client, namespace):
    core = client.CoreV1Api(api_client)
    assert core.read_namespace(namespace).status.phase == "Active"
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="cm"), data={"model": "/models/a b"}))
    assert core.read_namespaced_config_map("cm", namespace).data == {"model": "/models/a b"}


def test_lws_crd_validates_server_side(api_client, namespace):
    lws = dynamic.DynamicClient(api_client).resources.get(
        api_version="leaderworkerset.x-k8s.io/v1", kind="LeaderWorkerSet")
    created = lws.create(body=lws_body("ok", 2), namespace=namespace)
    assert created.spec.leaderWorkerTemplate.size == 2
    bad = lws_body("bad", 2)
    bad["spec"]["replicas"] = "two"
    with pytest.raises(ApiException) as err:
        lws.create(body=bad, namespace=namespace)
    assert err.value.status == 422
    assert "spec.replicas" in err.value.body


def test_owner_deletion_garbage_collects_dependents(api_client, namespace):
    core = client.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner")))
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="dependent", owner_references=[ref])))
    core.delete_namespaced_config_map("owner", namespace)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            core.read_namespaced_config_map("dependent", namespace)
        except ApiException as e:
            assert e.status == 404
            return
        time.sleep(0.5)
    pytest.fail("dependent ConfigMap was not garbage-collected within 60s (is kube-controller-manager running?)")
