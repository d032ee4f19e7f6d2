"""`helm upgrade` from the previous release and `helm uninstall`, as charts/sglang-operator/README.md
says they behave: the upgrade (CRDs applied first, since Helm never upgrades crds/) rolls the
operator and leaves running fleets untouched; uninstall removes the operator and its RBAC, keeps
the CRD, and the fleets keep serving, unmanaged."""
from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest
from kubernetes import client

from tests.cluster.controlplane import REPO, read_versions
from tests.cluster.node import NodeCluster
from tests.support import fleet
from tests.support.waiting import wait_for

RELEASE, OPERATOR_NS, NS = "sglang-operator", "sglang-system", "served"


@pytest.fixture(scope="module")
def bare_bed(tmp_path_factory):
    b = NodeCluster(tmp_path_factory.mktemp("upgrade-bed"), kwok_gpu_nodes=0)
    try:
        b.start()
        yield b
    finally:
        b.copy_logs(Path(str(tmp_path_factory.getbasetemp())) / "upgrade-bed-logs")
        b.stop()


def previous_chart(dest: Path) -> Path:
    """charts/sglang-operator as the previous release shipped it."""
    rev = read_versions()["PREVIOUS_RELEASE"]
    tar = subprocess.run(["git", "-C", str(REPO), "archive", rev, "charts/sglang-operator"], check=True,
                         capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(dest, filter="data")
    return dest / "charts" / "sglang-operator"


def lease_holder(bed) -> str | None:
    try:
        return client.CoordinationV1Api(bed.api_client()).read_namespaced_lease(
            "sglang-operator", OPERATOR_NS).spec.holder_identity
    except client.ApiException:
        return None


def lws(bed) -> dict:
    return client.CustomObjectsApi(bed.api_client()).get_namespaced_custom_object(
        "leaderworkerset.x-k8s.io", "v1", NS, "leaderworkersets", "kept")


def operator_images(bed) -> set[str]:
    pods = client.CoreV1Api(bed.api_client()).list_namespaced_pod(
        OPERATOR_NS, label_selector="app.kubernetes.io/name=sglang-operator").items
    return {c.image for p in pods if not p.metadata.deletion_timestamp for c in p.spec.containers}


def test_upgrade_from_the_previous_release_then_uninstall(bare_bed, tmp_path):
    bed = bare_bed
    old_image = bed.images["previous-sglang-operator"]
    repo, old_tag = old_image.rsplit(":", 1)
    old_chart = previous_chart(tmp_path)
    # the bed installs today's CRD; a cluster on the previous release has that release's
    fleet.kubectl(bed, "apply", "--server-side", "--force-conflicts", "-f", str(old_chart / "crds"))
    fleet.helm(bed, "install", RELEASE, str(old_chart), "-n", OPERATOR_NS, "--create-namespace",
               "--set", f"image.repository={repo}", "--set", f"image.tag={old_tag}", "--wait", "--timeout=180s")
    wait_for(lambda: lease_holder(bed), timeout=90, interval=0.5, what="the previous operator to lead")

    fleet.write_tiny_model(bed.share_dir)
    fleet.kubectl(bed, "create", "namespace", NS)
    doc = fleet.cpu_fleet("kept", bed.images["radix-runtime"], f"{bed.share_pod_path}/models", dp=1)
    fleet.apply(bed, NS, doc)
    fleet.wait_ready(bed, NS, "kept", timeout=300)
    url = fleet.service_url(bed, NS, "kept")
    answer = fleet.generate(url)
    lws_uid = lws(bed)["metadata"]["uid"]
    pod_uids = {p.metadata.uid for p in fleet.lws_pods(bed, NS, "kept")}

    # the upgrade, as the chart README says: CRDs first, then helm upgrade
    fleet.kubectl(bed, "apply", "--server-side", "--force-conflicts", "-f", str(fleet.CHART / "crds"))
    fleet.install_operator(bed, upgrade=True)
    wait_for(lambda: operator_images(bed) == {bed.images["sglang-operator"]}, timeout=120, interval=1,
             what="only new operator pods")
    # the fleet was not touched, and the new operator manages it
    assert lws(bed)["metadata"]["uid"] == lws_uid
    assert {p.metadata.uid for p in fleet.lws_pods(bed, NS, "kept")} == pod_uids
    assert "ROUTER" in fleet.get_sgld(bed, NS).splitlines()[0]  # the new CRD's printer columns
    policy = client.PolicyV1Api(bed.api_client())
    assert [p.metadata.name for p in policy.list_namespaced_pod_disruption_budget(OPERATOR_NS).items] == [RELEASE]
    fleet.apply(bed, NS, fleet.cpu_fleet("kept", bed.images["radix-runtime"], f"{bed.share_pod_path}/models", dp=2))
    wait_for(lambda: fleet.sgld(bed, NS, "kept")["status"].get("readyReplicas") == 2, timeout=300, interval=1,
             what="the upgraded operator to scale the fleet to 2 groups")
    assert fleet.generate(url) == answer

    # uninstall: the operator and its RBAC go; the CRD and the fleet stay and keep serving
    fleet.helm(bed, "uninstall", RELEASE, "-n", OPERATOR_NS, "--wait")
    apps, rbac = client.AppsV1Api(bed.api_client()), client.RbacAuthorizationV1Api(bed.api_client())
    wait_for(lambda: not apps.list_namespaced_deployment(OPERATOR_NS).items, timeout=60, interval=1,
             what="the operator Deployment to go")
    assert not [r for r in rbac.list_cluster_role().items if r.metadata.name.startswith(RELEASE)]
    assert not [b for b in rbac.list_cluster_role_binding().items if b.metadata.name.startswith(RELEASE)]
    assert not client.CoreV1Api(bed.api_client()).list_namespaced_service_account(
        OPERATOR_NS, field_selector=f"metadata.name={RELEASE}").items
    assert not policy.list_namespaced_pod_disruption_budget(OPERATOR_NS).items
    client.ApiextensionsV1Api(bed.api_client()).read_custom_resource_definition("sglangdeployments.sglangfleet.dev")
    assert len(fleet.lws_pods(bed, NS, "kept")) == 2
    assert fleet.generate(url) == answer
