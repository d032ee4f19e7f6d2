"""The rendered LeaderWorkerSet starts exactly our launcher: each example's leader and worker
command lines, with $(LWS_*) expanded as Kubernetes expands them, parse with the launcher's own
parser and place every pod where LWS puts it; for engine sglang, the launcher's mapping of the
same flags is exactly what the pod runs."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from radix_runtime.distributed.launcher import DIST_INIT_PORT, placement, sglang_argv
from radix_runtime.launch_server import engine_config, parse_args
from sglang_operator.api.validate import parse_spec
from sglang_operator.render import render_all
from sglang_operator.render.engines import HUB_MODEL_PATH

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples").glob("*.yaml"))


def k8s_expand(s: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command/args: $$ escapes, unknown variables stay."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), s)


def pods(path: Path):
    """(spec, [(env, command, args, container) for the leader and each worker]) of one example."""
    doc = yaml.safe_load(path.read_text())
    name = doc["metadata"]["name"]
    spec = parse_spec(doc["spec"])
    lws = next(o for o in render_all(name, "serving", doc["spec"]) if o["kind"] == "LeaderWorkerSet")
    t = lws["spec"]["leaderWorkerTemplate"]
    size = t.get("size", 1)
    out = []
    for index in range(size):
        tmpl = t["leaderTemplate"] if index == 0 and "leaderTemplate" in t else t["workerTemplate"]
        env = {"LWS_LEADER_ADDRESS": f"{name}-0.{name}.serving", "LWS_GROUP_SIZE": str(size),
               "LWS_WORKER_INDEX": str(index)}
        c = tmpl["spec"]["containers"][0]
        out.append((env, [k8s_expand(a, env) for a in c["command"]], [k8s_expand(a, env) for a in c["args"]], c))
    return spec, out


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_rendered_pods_start_the_launcher_where_lws_puts_them(path):
    spec, group = pods(path)
    par = spec.parallelism
    assert len(group) == par.group_size
    for env, command, args, container in group:
        assert not any("$(" in a for a in command + args), args  # every variable is known
        if spec.engine == "sglang":
            assert command == ["python3", "-m", "sglang.launch_server"]
            argv = ["--engine", "sglang", *args]
            parsed = parse_args(argv, env)
            assert sglang_argv(argv, parsed, env) == command + args
            # without the renderer's distributed flags, the launcher derives the same from LWS
            bare = _drop(argv, ("--dist-init-addr", "--nnodes", "--node-rank"))
            assert sorted(_pairs(sglang_argv(bare, parse_args(bare, env), env))) == sorted(_pairs(command + args))
        else:
            assert command == ["python", "-m", "radix_runtime.launch_server"]
            parsed = parse_args(args, env)
            # `$` and spaces survive; a hub model is served from the download's link
            assert engine_config(parsed).model_path == (spec.model.path or HUB_MODEL_PATH)
            # every pod, follower or leader, serves /health where its probes look
            http = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
            assert parsed.port == http and parsed.host == "0.0.0.0"
            probe = container["livenessProbe"]["httpGet"]
            assert probe == {"path": "/health", "port": "http"}
        p = placement(parsed, env)
        assert (p.tp, p.pp, p.nnodes) == (par.tp, par.pp, par.group_size)
        assert p.local_ranks == par.effective_gpus_per_pod or par.group_size == 1
        assert p.node_rank == int(env["LWS_WORKER_INDEX"])
        if p.nnodes > 1:
            assert (p.host, p.port) == (env["LWS_LEADER_ADDRESS"], DIST_INIT_PORT)
        # the same pod placed from the LWS variables alone, as the launcher does without flags
        bare = _drop(args, ("--dist-init-addr", "--nnodes", "--node-rank"))
        assert placement(parse_args(["--engine", spec.engine, *bare], env), env) == p


def test_a_model_path_with_dollar_signs_reaches_the_launcher_literally():
    doc = yaml.safe_load(EXAMPLES[0].read_text())
    doc["spec"]["model"]["path"] = "/models/$(LWS_GROUP_SIZE) $HOME"
    lws = render_all("x", "serving", doc["spec"])[0]
    args = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]["args"]
    expanded = [k8s_expand(a, {"LWS_GROUP_SIZE": "2"}) for a in args]
    assert engine_config(parse_args(expanded, {})).model_path == "/models/$(LWS_GROUP_SIZE) $HOME"


def _drop(argv: list[str], flags: tuple[str, ...]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in flags:
            skip = True
        else:
            out.append(a)
    return out


def _pairs(argv: list[str]) -> list[tuple[str, str]]:
    """A flag with its value, so reordered flags compare equal."""
    out, i = [], 0
    while i < len(argv):
        takes = i + 1 < len(argv) and argv[i].startswith("--") and not argv[i + 1].startswith("--")
        out.append((argv[i], argv[i + 1] if takes else ""))
        i += 2 if takes else 1
    return out
