"""Hypothesis strategies for valid SGLangDeployment specs (camelCase dicts, as users write them)."""
from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

# Any printable text, including spaces, quotes, `$(` and non-ASCII: none of it may reach a shell.
user_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40
)
dns_label = st.from_regex(r"\A[a-z]([-a-z0-9]{0,10}[a-z0-9])?\Z")
label_value = st.from_regex(r"\A[A-Za-z0-9]([-A-Za-z0-9_.]{0,8}[A-Za-z0-9])?\Z")
label_key = st.builds(lambda p, n: f"{p}/{n}" if p else n, st.one_of(st.none(), dns_label.map(lambda s: s + ".io")), label_value)
env_name = st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,12}\Z")
seconds = st.integers(1, 600)


def _omit_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def maybe(s: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), s)


@st.composite
def parallelism(draw) -> dict[str, Any]:
    tp = draw(st.sampled_from([1, 2, 4, 8, 16]))
    pp = draw(st.sampled_from([1, 2, 4]))
    divisors = [g for g in (1, 2, 4, 8, 16) if (tp * pp) % g == 0]
    out = {"tp": tp, "pp": pp, "dp": draw(st.integers(0, 4)), "gpusPerPod": draw(maybe(st.sampled_from(divisors)))}
    if out["gpusPerPod"] is None and tp * pp > 8 and (tp * pp) % 8:
        out["gpusPerPod"] = 1
    return _omit_none(out)


volume = st.one_of(
    st.builds(lambda n: {"persistentVolumeClaim": {"claimName": n}}, dns_label),
    st.builds(lambda p: {"hostPath": {"path": "/" + p}}, dns_label),
    st.builds(lambda s, p: {"nfs": {"server": s + ".local", "path": "/" + p}}, dns_label, dns_label),
    st.builds(lambda r: {"image": {"reference": f"registry.local/{r}:v1"}}, dns_label),
)


@st.composite
def autoscaling(draw) -> dict[str, Any]:
    lo = draw(st.integers(1, 5))
    policy = st.fixed_dictionaries(
        {"type": st.sampled_from(["Pods", "Percent"]), "value": st.integers(1, 100), "periodSeconds": st.integers(1, 1800)}
    )
    behaviour = st.fixed_dictionaries(
        {}, optional={"stabilizationWindowSeconds": st.integers(0, 3600), "policies": st.lists(policy, min_size=1, max_size=3)}
    )
    return _omit_none(
        {
            "enabled": draw(st.booleans()),
            "minReplicas": lo,
            "maxReplicas": draw(st.integers(lo, 10)),
            "metric": draw(st.sampled_from(["sglang:num_requests_waiting", "sglang:num_queue_reqs", "vllm:num_requests_waiting"])),
            "targetPerReplica": draw(st.sampled_from([0.5, 4, 8, 32])),
            "scaleUp": draw(maybe(behaviour)),
            "scaleDown": draw(maybe(behaviour)),
        }
    )


probe = st.fixed_dictionaries(
    {},
    optional={
        "path": st.sampled_from(["/health", "/health_generate", "/v1/models"]),
        "periodSeconds": seconds,
        "timeoutSeconds": seconds,
        "failureThreshold": st.integers(1, 500),
        "initialDelaySeconds": st.integers(0, 600),
    },
)

env_var = st.one_of(
    st.builds(lambda n, v: {"name": n, "value": v}, env_name, user_text),
    st.builds(lambda n, s, k: {"name": n, "valueFrom": {"secretKeyRef": {"name": s, "key": k}}}, env_name, dns_label, dns_label),
)

toleration = st.one_of(
    st.builds(lambda k: {"key": k, "operator": "Exists", "effect": "NoSchedule"}, label_key),
    st.builds(lambda k, v: {"key": k, "operator": "Equal", "value": v}, label_key, label_value),
    st.builds(lambda k, s: {"key": k, "effect": "NoExecute", "tolerationSeconds": s}, label_key, seconds),
)


@st.composite
def resources(draw) -> dict[str, Any]:
    # Every limit here is at least every request (requests above limits are invalid).
    requests = draw(
        st.fixed_dictionaries(
            {}, optional={"cpu": st.sampled_from([1, "500m", "2.5", 16]), "memory": st.sampled_from(["1Gi", "64Gi", 1024])}
        )
    )
    limits = draw(
        st.fixed_dictionaries(
            {},
            optional={"nvidia.com/gpu": st.sampled_from([0, 1, "8"]), "cpu": st.sampled_from([16, "32"]), "memory": st.just("128Gi")},
        )
    )
    return _omit_none(
        {"requests": requests or None, "limits": limits or None, "sharedMemory": draw(maybe(st.sampled_from(["1Gi", "256Mi", 2**30])))}
    )


@st.composite
def speculative(draw, engine: str | None) -> dict[str, Any]:
    """spec.speculative as api/speculative.py allows it for that engine."""
    upstream = engine == "sglang"
    algo = draw(st.sampled_from(["STANDALONE", "NGRAM"] + (["EAGLE", "EAGLE3", "NEXTN"] if upstream else [])))
    draft = None
    if algo != "NGRAM" and (algo != "NEXTN" or draw(st.booleans())):
        draft = _omit_none({"path": draw(user_text), "volume": draw(maybe(volume))})
    return _omit_none({
        "algorithm": algo, "draftModel": draft, "numSteps": draw(maybe(st.integers(1, 8))),
        "eagleTopk": draw(maybe(st.integers(1, 8) if upstream else st.just(1))),
        "numDraftTokens": draw(maybe(st.integers(2, 16))),
    })


@st.composite
def specs(draw) -> dict[str, Any]:
    envs = draw(st.lists(env_var, max_size=4, unique_by=lambda e: e["name"]))
    surge = draw(st.sampled_from([0, 1, "25%"]))
    engine = draw(maybe(st.sampled_from(["radix", "sglang"])))
    secret_name = st.sampled_from(["api-key", "llm.keys", "k8s-secret-1"])
    # apiKeySecret: engine radix only, and the operator owns SGLANG_API_KEY (api/spec.py rules)
    keyed = engine != "sglang" and all(e["name"] != "SGLANG_API_KEY" for e in envs)
    return _omit_none(
        {
            "apiKeySecret": draw(maybe(st.fixed_dictionaries({"name": secret_name, "key": st.sampled_from(
                ["api-key", "token.txt"])}))) if keyed else None,
            "imagePullSecrets": draw(maybe(st.lists(st.fixed_dictionaries({"name": secret_name}), min_size=1,
                                                    max_size=3, unique_by=lambda r: r["name"]))),
            "model": _omit_none({"path": draw(user_text), "servedName": draw(maybe(user_text)), "volume": draw(maybe(volume))}),
            "engine": engine,
            "speculative": draw(maybe(speculative(engine))),
            "image": draw(maybe(st.sampled_from(["registry.local/runtime:v1", "lmsysorg/sglang:v0.5.2"]))),
            "parallelism": draw(maybe(parallelism())),
            "resources": draw(maybe(resources())),
            "runtimeArgs": draw(maybe(st.lists(user_text, max_size=4))),
            "env": envs or None,
            "autoscaling": draw(maybe(autoscaling())),
            "probes": draw(maybe(st.fixed_dictionaries({}, optional={"startup": probe, "readiness": probe, "liveness": probe}))),
            "service": draw(maybe(st.fixed_dictionaries({}, optional={"type": st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"]), "port": st.integers(1, 65535)}))),
            "scheduling": draw(
                maybe(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "nodeSelector": st.dictionaries(label_key, label_value, max_size=3),
                            "tolerations": st.lists(toleration, max_size=3),
                            "groupTopologyKey": label_key,
                        },
                    )
                )
            ),
            "rollout": {"maxSurge": surge, "maxUnavailable": draw(st.sampled_from([1, "10%"] if surge == 0 else [0, 1, "10%"]))},
        }
    )
