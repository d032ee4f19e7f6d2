"""spec.speculative renders as SGLang's --speculative-* flags (both engines) and the draft model's
own volume (examples/speculative.yaml is covered by the golden files)."""
from __future__ import annotations

from sglang_operator.api import parse_spec
from sglang_operator.render.pod import LEADER, pod_template


def _pod(engine: str = "radix", **speculative):
    spec = parse_spec({"model": {"path": "/models/m", "volume": {"persistentVolumeClaim": {"claimName": "m"}}},
                       "engine": engine, "speculative": speculative})
    return pod_template("x", spec, LEADER)["spec"]


def test_standalone_passes_the_draft_and_mounts_its_volume():
    pod = _pod(algorithm="STANDALONE", numSteps=3, draftModel={
        "path": "/draft-model/d$x", "volume": {"nfs": {"server": "nfs", "path": "/export/drafts"}}})
    args = pod["containers"][0]["args"]
    i = args.index("--speculative-algorithm")
    assert args[i:i + 6] == ["--speculative-algorithm", "STANDALONE", "--speculative-draft-model-path",
                             "/draft-model/d$$x", "--speculative-num-steps", "3"]  # $ escaped for Kubernetes
    assert {"name": "draft-model", "nfs": {"server": "nfs", "path": "/export/drafts", "readOnly": True}} in pod["volumes"]
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "draft-model", "mountPath": "/draft-model", "readOnly": True} in mounts
    assert {"name": "model", "mountPath": "/models", "readOnly": True} in mounts


def test_ngram_needs_no_draft_and_upstream_gets_eagle_as_is():
    pod = _pod(algorithm="NGRAM", numDraftTokens=8)
    args = pod["containers"][0]["args"]
    assert "--speculative-draft-model-path" not in args
    assert args[args.index("--speculative-algorithm"):][:4] == [
        "--speculative-algorithm", "NGRAM", "--speculative-num-draft-tokens", "8"]
    assert not any(v["name"] == "draft-model" for v in pod["volumes"])
    pod = _pod(algorithm="EAGLE3", eagleTopk=4, draftModel={"path": "org/eagle3-head"}, engine="sglang")
    args = pod["containers"][0]["args"]
    assert pod["containers"][0]["command"][:3] == ["python3", "-m", "sglang.launch_server"]
    for flag, value in (("--speculative-algorithm", "EAGLE3"), ("--speculative-eagle-topk", "4"),
                        ("--speculative-draft-model-path", "org/eagle3-head")):
        assert args[args.index(flag) + 1] == value
