"""Shared fixtures. The control plane is real (etcd + kube-apiserver + kube-controller-manager on
loopback, built from Go modules); if it cannot start, every test that needs it errors with the
reason: nothing is skipped."""
from __future__ import annotations

import uuid

import pytest

from tests.cluster.controlplane import ControlPlane


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    cp = ControlPlane(tmp_path_factory.mktemp("control-plane"))
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture
def api_client(cluster):
    client = cluster.api_client()
    yield client
    client.close()


@pytest.fixture
def namespace(cluster, api_client):
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:10]}"
    client.CoreV1Api(api_client).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    client.CoreV1Api(api_client).delete_namespace(name, propagation_policy="Background")
