"""Fixtures of the operator's integration tests (the control plane ones are in tests/conftest.py)."""
from __future__ import annotations

import pytest

from tests.support.kube import Api


@pytest.fixture
def api(api_client, namespace):
    """Admin shortcuts on the test's own namespace."""
    return Api(api_client, namespace)
