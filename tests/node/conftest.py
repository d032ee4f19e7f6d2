"""Fixtures for tests on the node test bed (tests/cluster/node.py): a real kubelet node, the LWS
controller, kube-scheduler, CoreDNS and kwok GPU nodes. One bed per test module (a host holds one
bed at a time, and the hygiene test needs the host to itself between modules). A bed that cannot
start errors every test with the reason: nothing is skipped."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.cluster.controlplane import REPO
from tests.cluster.node import NodeCluster
from tests.support import fleet
from tests.support.net import free_port


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    bed = NodeCluster(tmp_path_factory.mktemp("node-bed"), kwok_gpu_nodes=6)
    try:
        bed.start()
    except BaseException:
        bed.stop()
        raise
    try:
        yield bed
    finally:
        bed.copy_logs(Path(str(tmp_path_factory.getbasetemp())) / "node-bed-logs")
        bed.stop()


@pytest.fixture
def node_api(node):
    client = node.api_client()
    yield client
    client.close()


@pytest.fixture
def node_ns(node, node_api):
    from kubernetes import client
    name = f"n-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(node_api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    client.CoreV1Api(node_api).delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="module")
def tiny_model_on_node(node) -> str:
    """A tiny random-weight checkpoint in the directory the node shares with pods; returns the
    hostPath pods mount."""
    fleet.write_tiny_model(node.share_dir)  # examples/cpu-tiny.yaml's "tiny llama"
    return f"{node.share_pod_path}/models"


@pytest.fixture(scope="module")
def operator_on_host(node, tmp_path_factory):
    """`sglang-operator run` as a process on the host, against the bed's API server."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sglang_operator.cli", "run", "--all-namespaces", f"--metrics-port={free_port()}",
             "--metrics-addr=127.0.0.1", "--log-format=full", "--watch-timeout=10"],
            stdout=f, stderr=subprocess.STDOUT, cwd=REPO,
            env={**os.environ, "KUBECONFIG": str(node.kubeconfig), "PYTHONUNBUFFERED": "1"})
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    print(f"operator log: {log}")
