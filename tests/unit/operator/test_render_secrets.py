"""spec.apiKeySecret and spec.imagePullSecrets (pure rendering): the key reaches the leader only as
an env var from a secretKeyRef (never argv), probes and the metrics scrape stay on open paths, and
pull secrets go on every pod the fleet runs."""
import pytest

from radix_runtime.launch_server import API_KEY_ENV as RUNTIME_API_KEY_ENV, parse_args
from sglang_operator.api import InvalidSpec, parse_spec
from sglang_operator.api.crd import build_crd
from sglang_operator.api.secrets import API_KEY_ENV
from sglang_operator.render import render_all
from tests.unit.operator.test_render_lws import _expand

KEY = {"name": "llm-api-key", "key": "token"}
MULTI = {"model": {"path": "/m"}, "parallelism": {"tp": 16, "gpusPerPod": 8}, "apiKeySecret": KEY,
         "env": [{"name": "HF_HOME", "value": "/cache"}]}


def templates(spec: dict) -> dict[str, dict]:
    lws = render_all("f", "ns", spec)[0]
    t = lws["spec"]["leaderWorkerTemplate"]
    return {"leader": t["leaderTemplate"]["spec"], "worker": t["workerTemplate"]["spec"]}


def test_the_key_is_an_env_var_from_the_secret_on_the_leader_only():
    assert API_KEY_ENV == RUNTIME_API_KEY_ENV  # the operator sets what the runtime reads
    pods = templates(MULTI)
    leader, worker = (pods[r]["containers"][0] for r in ("leader", "worker"))
    assert leader["env"] == [{"name": "HF_HOME", "value": "/cache"},
                             {"name": "SGLANG_API_KEY", "valueFrom": {"secretKeyRef": KEY}}]
    assert worker["env"] == [{"name": "HF_HOME", "value": "/cache"}]  # workers serve no API
    for c in (leader, worker):
        argv = " ".join(c["command"] + c["args"])
        assert "api-key" not in argv and "API_KEY" not in argv and "llm-api-key" not in argv
    # The flags the leader gets parse to no key: the runtime takes it from the env var at start.
    lws_env = {"LWS_LEADER_ADDRESS": "l", "LWS_GROUP_SIZE": "2", "LWS_WORKER_INDEX": "0"}
    argv = _expand(leader["args"], lws_env)
    assert parse_args(argv, env=lws_env).api_key is None
    assert parse_args(argv, env={**lws_env, "SGLANG_API_KEY": "k"}).api_key == "k"


def test_probes_and_metrics_stay_on_paths_that_need_no_key():
    leader = templates(MULTI)["leader"]
    c = leader["containers"][0]
    assert {c[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")} <= {
        "/health", "/health_generate"}
    assert all("httpHeaders" not in c[p]["httpGet"] for p in ("startupProbe", "readinessProbe", "livenessProbe"))


def test_without_the_field_nothing_changes():
    pods = templates({"model": {"path": "/m"}})
    assert "env" not in pods["leader"]["containers"][0]
    assert all("imagePullSecrets" not in p for p in pods.values())


def test_image_pull_secrets_on_leader_worker_and_router_pods():
    pulls = [{"name": "registry-a"}, {"name": "registry-b"}]
    spec = {"model": {"path": "/m"}, "parallelism": {"tp": 16, "gpusPerPod": 8, "dp": 2},
            "imagePullSecrets": pulls, "router": {"enabled": True}}
    assert all(p["imagePullSecrets"] == pulls for p in templates(spec).values())
    router = next(o for o in render_all("f", "ns", spec) if o["kind"] == "Deployment")
    assert router["spec"]["template"]["spec"]["imagePullSecrets"] == pulls


@pytest.mark.parametrize("patch,needle", [
    ({"engine": "sglang"}, "apiKeySecret needs engine: radix"),
    ({"router": {"enabled": True}, "parallelism": {"dp": 2}}, "cannot be combined with spec.router"),
    ({"env": [{"name": "SGLANG_API_KEY", "value": "x"}]}, "env must not set SGLANG_API_KEY"),
    ({"apiKeySecret": {"name": "s"}}, "spec.apiKeySecret.key"),
    ({"apiKeySecret": {"name": "Not_A_Name", "key": "k"}}, "spec.apiKeySecret.name"),
])
def test_what_is_refused(patch, needle):
    with pytest.raises(InvalidSpec, match=needle):
        parse_spec({"model": {"path": "/m"}, "apiKeySecret": KEY, **patch})
    parse_spec({"model": {"path": "/m"}, "apiKeySecret": KEY, "router": {"enabled": False}})  # off: fine


def test_the_crd_defaults_neither_field_into_every_object():
    """Like spec.router: no default, so objects that do not use them look as before to any operator."""
    props = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert "default" not in props["apiKeySecret"] and "default" not in props["imagePullSecrets"]
