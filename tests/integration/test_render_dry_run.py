"""Rendered objects on a real kube-apiserver (server-side dry run, LWS CRD installed).

The LWS CRD only checks its schema, so each pod template is also dry-run as a Pod: that runs the
API server's full pod validation (env names, resources, probes, volumes, security context)."""
from __future__ import annotations

import copy
import time

import pytest
from hypothesis import HealthCheck, given, settings
from kubernetes import dynamic
from kubernetes.client.rest import ApiException

from sglang_operator.api import API_VERSION, KIND, parse_deployment
from sglang_operator.render import render_all, with_owner
from tests.unit.operator.cases import BASE, EXAMPLES, load_example, merged
from tests.unit.operator.strategies import specs

pytestmark = pytest.mark.cluster


class DryRun:
    def __init__(self, api_client, namespace: str):
        self.dyn = dynamic.DynamicClient(api_client)
        self.namespace = namespace
        self._resources: dict = {}

    def resource(self, obj: dict):
        key = (obj["apiVersion"], obj["kind"])
        if key not in self._resources:
            self._resources[key] = self.dyn.resources.get(api_version=key[0], kind=key[1])
        return self._resources[key]

    def create(self, obj: dict) -> dict:
        try:
            return self.resource(obj).create(body=obj, namespace=self.namespace, dry_run="All").to_dict()
        except ApiException as err:
            raise AssertionError(f"{obj['kind']} rejected: {err.body}") from None

    def pods_of(self, lws: dict) -> list[dict]:
        """A Pod per template, with what LWS adds (its env) so $(VAR) references resolve."""
        out = []
        name = lws["metadata"]["name"]
        for role, index in (("leaderTemplate", "0"), ("workerTemplate", "1")):
            t = copy.deepcopy(lws["spec"]["leaderWorkerTemplate"][role])
            lws_env = [{"name": "LWS_LEADER_ADDRESS", "value": f"{name}-0.{name}.{self.namespace}"},
                       {"name": "LWS_GROUP_SIZE", "value": str(lws["spec"]["leaderWorkerTemplate"]["size"])},
                       {"name": "LWS_WORKER_INDEX", "value": index}]
            for c in t["spec"]["containers"]:
                c["env"] = lws_env + c.get("env", [])
            out.append({"apiVersion": "v1", "kind": "Pod", "metadata": {**t["metadata"], "name": f"{name}-0-{index}"}, "spec": t["spec"]})
        return out

    def render_and_create(self, manifest: dict) -> list[dict]:
        d = parse_deployment(manifest)
        objs = render_all(d.metadata.name, self.namespace, d.spec)
        created = [self.create(o) for o in objs]
        for pod in self.pods_of(objs[0]):
            self.create(pod)
        return created


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_rendered_example_is_accepted(api_client, namespace, path):
    created = DryRun(api_client, namespace).render_and_create(load_example(path))
    assert [o["kind"] for o in created] == ["LeaderWorkerSet", "Service", "PodDisruptionBudget"]
    lws = created[0]
    assert lws["spec"]["leaderWorkerTemplate"]["size"] == parse_deployment(load_example(path)).spec.parallelism.group_size


def test_rendered_objects_for_random_valid_specs_are_accepted(api_client, namespace):
    dry, seen = DryRun(api_client, namespace), []

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(spec=specs())
    def accepted(spec):
        manifest = merged(BASE, {"metadata": {"name": "prop"}, "spec": spec})
        dry.create(manifest)  # the SGLangDeployment itself
        first = dry.render_and_create(manifest)
        assert render_all("prop", namespace, spec) == render_all("prop", namespace, spec)
        seen.append(first[0]["spec"]["leaderWorkerTemplate"]["size"])

    accepted()
    assert len(seen) == 30 and max(seen) > 1  # multi-pod groups were among them


def test_owned_objects_are_garbage_collected_with_the_deployment(api_client, namespace):
    dyn = dynamic.DynamicClient(api_client)
    sgld = dyn.resources.get(api_version=API_VERSION, kind=KIND)
    manifest = load_example(next(p for p in EXAMPLES if p.stem == "multinode-tp16"))
    owner = sgld.create(body=manifest, namespace=namespace).to_dict()
    d = parse_deployment(owner)
    for obj in render_all(d.metadata.name, namespace, d.spec):
        owned = with_owner(obj, owner["metadata"])
        dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"]).create(body=owned, namespace=namespace)
    lws = dyn.resources.get(api_version="leaderworkerset.x-k8s.io/v1", kind="LeaderWorkerSet")
    assert lws.get(name=d.metadata.name, namespace=namespace).metadata.ownerReferences[0].uid == owner["metadata"]["uid"]
    sgld.delete(name=d.metadata.name, namespace=namespace, propagation_policy="Foreground")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not lws.get(namespace=namespace).items:
            break
        time.sleep(0.5)
    assert not lws.get(namespace=namespace).items, "the LeaderWorkerSet outlived its SGLangDeployment"


def test_pod_dry_run_really_runs_pod_validation(api_client, namespace):
    """Guards the check above: a pod error the LWS schema would let through is caught here."""
    dry = DryRun(api_client, namespace)
    d = parse_deployment(merged(BASE, {"metadata": {"name": "bad-pod"}}))
    lws = render_all("bad-pod", namespace, d.spec)[0]
    dry.create(lws)  # the LWS schema alone accepts it ...
    for pod in dry.pods_of(lws):
        pod["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}
        with pytest.raises(AssertionError, match="must be less than or equal to cpu limit"):
            dry.create(pod)  # ... the Pod does not
