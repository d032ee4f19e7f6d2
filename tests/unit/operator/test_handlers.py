"""The kopf wiring's own logic: which children and pods belong to an SGLangDeployment."""
from __future__ import annotations

import kopf

from sglang_operator import handlers
from sglang_operator.handlers import owner_name
from sglang_operator.reconcile.triggers import Seen
from sglang_operator.render import render_all
from sglang_operator.render.labels import DEPLOYMENT_LABEL


def test_owner_name_needs_a_controller_reference_to_an_sgld():
    ref = {"apiVersion": "sglangfleet.dev/v1alpha1", "kind": "SGLangDeployment", "name": "a", "controller": True}
    assert owner_name({"ownerReferences": [ref]}) == "a"
    assert owner_name({"ownerReferences": [{**ref, "controller": False}]}) is None
    assert owner_name({"ownerReferences": [{**ref, "apiVersion": "other/v1"}]}) is None
    assert owner_name({}) is None



def test_pod_events_of_our_pods_only_reconcile_the_deployment_named_by_their_label():
    [registered] = [h for h in kopf.get_default_registry()._watching.get_all_handlers() if h.id == "pod_changed"]
    assert registered.selector.any_name == "pods" and registered.labels == {DEPLOYMENT_LABEL: kopf.PRESENT}
    # The label is on every pod the LWS creates from our templates, leaders and workers alike.
    lws = next(o for o in render_all("tiny", "ns", {"model": {"path": "/m"}, "parallelism": {"tp": 2, "gpusPerPod": 1}})
               if o["kind"] == "LeaderWorkerSet")
    tmpl = lws["spec"]["leaderWorkerTemplate"]
    assert all(t["metadata"]["labels"][DEPLOYMENT_LABEL] == "tiny" for t in (tmpl["leaderTemplate"], tmpl["workerTemplate"]))

    runs = []

    class Retrier:
        def run(self, *args):
            runs.append(args)

    memo = kopf.Memo(retrier=Retrier(), seen=Seen())
    body = {"kind": "Pod", "metadata": {"uid": "u1", "labels": {DEPLOYMENT_LABEL: "tiny", "x": "y"}}, "status": {}}
    for _ in range(2):
        handlers.pod_changed(body=body, labels=body["metadata"]["labels"], type="MODIFIED", namespace="ns", memo=memo)
    assert runs == [("ns", "tiny", "Pod")]  # the second event changed nothing a pass reads
