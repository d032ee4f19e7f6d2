"""Shared fixtures. The control plane is real (etcd + kube-apiserver + kube-controller-manager on
loopback, built from Go modules); if it cannot start, every test that needs it errors with the
reason: nothing is skipped."""
from __future__ import annotations

import uuid

import pytest

from tests.cluster.controlplane import ControlPlane


_start_failure: list[BaseException] = []


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    # pytest retries a failed session fixture for every test; fail the rest fast with the first reason
    if _start_failure:
        raise RuntimeError(f"control plane failed to start earlier in this run: {_start_failure[0]}")
    cp = ControlPlane(tmp_path_factory.mktemp("control-plane"))
    try:
        cp.start()
    except BaseException as e:
        _start_failure.append(e)
        raise
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


from tests.support.tiny_models import tiny_llava, tiny_model, tiny_models  # noqa: E402,F401 - runtime fixtures
