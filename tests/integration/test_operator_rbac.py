"""Least privilege: the operator runs with the Helm chart's own ServiceAccount and RBAC (rendered by
helm, applied as is), authenticated by a TokenRequest token, with the chart's own command-line flags.
It reconciles, and it cannot do what its role does not grant."""
from __future__ import annotations

import subprocess
import uuid

import httpx
import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.net import free_port
from tests.support.kube import Api, wait_for_api
from tests.support.operator import Operator, REPO, example, token_kubeconfig

from .pods import create_group, set_ip, set_ready
from .router import router_objects, workers

pytestmark = pytest.mark.cluster

CHART = REPO / "charts" / "sglang-operator"
NOT_APPLIED = {"Deployment", "Service"}  # no kubelet here: the operator runs as a local process instead


def helm_template(cluster, release: str, namespace: str) -> list[dict]:
    out = subprocess.run([str(cluster.bins.helm), "template", release, str(CHART), "--namespace", namespace,
                          "--set", f"watchNamespaces={{{namespace}}}"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def forbidden(fn) -> bool:
    try:
        fn()
    except ApiException as e:
        return e.status == 403
    return False


def test_operator_under_the_charts_service_account(cluster, api_client, namespace, tmp_path):
    release = f"rbac-{uuid.uuid4().hex[:6]}"
    docs = helm_template(cluster, release, namespace)
    kinds = {d["kind"] for d in docs}
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "RoleBinding", "Role", "Deployment"} <= kinds
    rbac = [d for d in docs if d["kind"] not in NOT_APPLIED]
    cluster_scoped = [d for d in rbac if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    op = None
    try:
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac))
        token = client.CoreV1Api(api_client).create_namespaced_service_account_token(
            sa, namespace, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
                audiences=[], expiration_seconds=3600))).status.token
        kubeconfig = token_kubeconfig(cluster, token, tmp_path / "sa.kubeconfig")

        # The chart's own flags, minus the fixed liveness port (this machine is shared).
        assert container["command"] == ["sglang-operator"] and container["args"][0] == "run"
        flags = [a for a in container["args"][1:] if not a.startswith("--liveness")]
        assert f"--namespace={namespace}" in flags and "--leader-elect" in flags
        liveness = free_port()
        op = Operator(kubeconfig, tmp_path, *flags, f"--liveness=http://127.0.0.1:{liveness}/healthz", name="sa")

        admin = Api(api_client, namespace)
        admin.create(example("least"))
        wait_for_api(lambda: all(admin.children("least").values()), timeout=20, what="children created under the SA")
        wait_for_api(lambda: admin.condition("least", "Ready"), what="status written under the SA")
        wait_for_api(lambda: "Created" in {e["reason"] for e in admin.events("least")}, what="an Event posted under the SA")
        [pod] = create_group(admin, "least", 0, ready=False)
        admin.patch_lws_status("least", {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1})
        wait_for_api(lambda: admin.sgld("least")["status"].get("replicas") == 1, what="the LWS status under the SA")
        set_ready(admin, pod, True)  # only the pod watch (list/watch pods) can bring this news
        wait_for_api(lambda: admin.condition("least", "Ready")["status"] == "True", timeout=10, what="pod readiness under the SA")
        admin.core.delete_namespaced_service("least-api", namespace)
        wait_for_api(lambda: admin.service("least-api"), timeout=10, what="drift repair under the SA")
        # spec.router: its Deployment, Service and worker ConfigMap created (the Ready leader listed),
        # and deleted when it is turned off: the role's delete on exactly those kinds.
        set_ip(admin, pod, "10.2.0.10")
        admin.patch_sgld("least", {"spec": {"router": {"enabled": True}}})
        wait_for_api(lambda: all(router_objects(admin, "least").values()), timeout=10, what="the router under the SA")
        wait_for_api(lambda: workers(admin, "least") == [{"id": admin.core.read_namespaced_pod(pod, namespace).metadata.uid,
                                                          "url": "http://10.2.0.10:30000"}], what="workers under the SA")
        admin.patch_sgld("least", {"spec": {"router": {"enabled": False}}})
        wait_for_api(lambda: not any(router_objects(admin, "least").values()), timeout=10,
                     what="the router deleted under the SA")
        assert admin.condition("least", "Degraded")["status"] == "False"
        assert httpx.get(f"http://127.0.0.1:{liveness}/healthz", timeout=5).status_code == 200

        # What the role does not grant.
        with _client(cluster, token) as sa_client:
            core, apps = client.CoreV1Api(sa_client), client.AppsV1Api(sa_client)
            custom = client.CustomObjectsApi(sa_client)
            assert forbidden(lambda: core.list_namespaced_secret(namespace))
            assert forbidden(lambda: apps.create_namespaced_stateful_set(namespace, {
                "metadata": {"name": "nope"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
                    "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}}))
            assert forbidden(lambda: core.create_namespaced_pod(namespace, {
                "metadata": {"name": "nope"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}))
            # delete only on the router's kinds (deployments, services, configmaps): not on these
            assert forbidden(lambda: custom.delete_namespaced_custom_object(
                "leaderworkerset.x-k8s.io", "v1", namespace, "leaderworkersets", "least"))
            assert forbidden(lambda: client.PolicyV1Api(sa_client).delete_namespaced_pod_disruption_budget(
                "least", namespace))
            assert forbidden(lambda: core.delete_namespaced_pod(pod, namespace))
            assert forbidden(lambda: custom.delete_namespaced_custom_object(
                "sglangfleet.dev", "v1alpha1", namespace, "sglangdeployments", "least"))
            assert forbidden(lambda: custom.list_namespaced_custom_object(
                "sglangfleet.dev", "v1alpha1", "default", "sglangdeployments"))  # outside its namespaces
            assert forbidden(lambda: custom.list_cluster_custom_object("sglangfleet.dev", "v1alpha1", "sglangdeployments"))
            assert forbidden(lambda: client.RbacAuthorizationV1Api(sa_client).list_cluster_role())
        assert op.alive(), op.log_tail()
    finally:
        if op is not None:
            Api(api_client, namespace).delete_all_sglds()
            op.stop()
        for d in cluster_scoped:
            cluster.kubectl("delete", d["kind"], d["metadata"]["name"], "--ignore-not-found", "--wait=false")


def _client(cluster, token: str) -> client.ApiClient:
    cfg = client.Configuration()
    cfg.host = cluster.server
    cfg.ssl_ca_cert = str(cluster.pki.ca_cert)
    cfg.api_key = {"BearerToken": token}
    cfg.api_key_prefix = {"BearerToken": "Bearer"}
    return client.ApiClient(cfg)
