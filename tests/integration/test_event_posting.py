"""Events are posted through the API, so they work from any thread (the resync thread, the
autoscaler task), not only inside kopf's handler tasks, and a failed post never raises."""
from __future__ import annotations

import threading

import pytest
from kubernetes import client

from sglang_operator.kube.client import Kube
from sglang_operator.kube.events import WARNING, Event, api_poster

pytestmark = pytest.mark.cluster


def test_event_posted_from_a_plain_thread(api_client, namespace):
    parent = {"metadata": {"name": "ev", "namespace": namespace, "uid": "0000-1111"}}
    post = api_poster(Kube(api_client, "sglang-operator"))
    t = threading.Thread(target=post, args=(parent, Event(WARNING, "InvalidSpec", "parallelism.tp: must be >= 1")))
    t.start()
    t.join(timeout=30)
    events = client.CoreV1Api(api_client).list_namespaced_event(namespace).items
    assert [(e.type, e.reason, e.message, e.involved_object.kind, e.involved_object.name) for e in events] == [
        ("Warning", "InvalidSpec", "parallelism.tp: must be >= 1", "SGLangDeployment", "ev")]


def test_failed_post_is_logged_not_raised(api_client, caplog):
    parent = {"metadata": {"name": "ev", "namespace": "no-such-namespace-x", "uid": "u"}}
    api_poster(Kube(api_client, "sglang-operator"))(parent, Event(WARNING, "Whatever", "m"))
    assert "could not post event Whatever on no-such-namespace-x/ev" in caplog.text
