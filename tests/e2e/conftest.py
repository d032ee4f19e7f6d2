"""The end-to-end bed: the node test bed with the operator installed by `helm install` from
charts/sglang-operator, running as a pod (the image `make images` built) under the chart's
ServiceAccount. One bed per test module (a host holds one bed at a time)."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from kubernetes import client

from tests.cluster.node import NodeCluster
from tests.support import fleet


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    b = NodeCluster(tmp_path_factory.mktemp("e2e-bed"), kwok_gpu_nodes=0)
    try:
        b.start()
        fleet.install_operator(b)
    except BaseException:
        b.stop()
        raise
    try:
        yield b
    finally:
        b.copy_logs(Path(str(tmp_path_factory.getbasetemp())) / "e2e-bed-logs")
        b.stop()


@pytest.fixture(scope="module")
def models_dir(bed) -> str:
    """hostPath of the node's model directory (holds examples/cpu-tiny.yaml's `tiny llama`)."""
    fleet.write_tiny_model(bed.share_dir)
    return f"{bed.share_pod_path}/models"


@pytest.fixture
def ns(bed):
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(bed.api_client())
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name, propagation_policy="Background")
