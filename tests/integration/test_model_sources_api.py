"""Model sources on a real kube-apiserver: the CRD's CEL rules for model.hub reject what pydantic
rejects with the same message, a stored hub spec gains no defaults, and the rendered pods (the
download init container, an OCI image volume) pass the API server's pod validation."""
from __future__ import annotations

import pytest
import yaml
from kubernetes import dynamic

from sglang_operator.api import API_VERSION, KIND, InvalidSpec, parse_spec
from tests.integration.test_render_dry_run import DryRun
from tests.unit.operator.cases import BASE

pytestmark = pytest.mark.cluster

# (model, a message both layers give)
RULES = [
    ({}, "model must set exactly one of path (a directory in the pod) and hub"),
    ({"path": "/m", "hub": {"id": "a/b"}}, "model must set exactly one of path"),
    ({"hub": {"id": "a/b"}, "volume": {"hostPath": {"path": "/x"}}}, "model.volume cannot be combined with model.hub"),
    ({"hub": {"id": "a/b", "cache": {}}}, "model.hub.cache must set exactly one of persistentVolumeClaim, hostPath, emptyDir"),
    ({"hub": {"id": "a--b/c"}}, "model.hub.id must not contain '--' or '..'"),
]


def _manifest(name: str, model: dict, **spec: object) -> dict:
    return {**BASE, "metadata": {"name": name}, "spec": {"model": model, **spec}}


@pytest.mark.parametrize("model,message", RULES, ids=[m for _, m in RULES])
def test_api_server_and_pydantic_reject_the_same_hub_specs(cluster, namespace, model, message):
    manifest = _manifest("bad", model)
    with pytest.raises(InvalidSpec) as e:
        parse_spec(manifest["spec"])
    assert message in str(e.value)
    proc = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest),
                           check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_a_stored_hub_spec_has_no_defaults(api_client, namespace):
    res = dynamic.DynamicClient(api_client).resources.get(api_version=API_VERSION, kind=KIND)
    manifest = _manifest("hub", {"hub": {"id": "org/m", "cache": {"emptyDir": {}}}})
    created = res.create(body=manifest, namespace=namespace).to_dict()
    assert created["spec"]["model"] == {"hub": {"id": "org/m", "cache": {"emptyDir": {}}}}


@pytest.mark.parametrize("model", [
    {"hub": {"id": "org/m", "revision": "v1", "endpoint": "https://hub.local", "tokenSecret": {"name": "t", "key": "k"},
             "cache": {"hostPath": {"path": "/var/cache/models"}}}},
    {"path": "/models/m", "volume": {"image": {"reference": "registry.local/models/llama:1", "pullPolicy": "IfNotPresent"}}},
], ids=["hub-hostpath", "image-volume"])
def test_rendered_pods_pass_pod_validation(api_client, namespace, model):
    manifest = _manifest("src", model, parallelism={"tp": 16, "gpusPerPod": 8})  # leader and worker templates
    DryRun(api_client, namespace).render_and_create(manifest)
