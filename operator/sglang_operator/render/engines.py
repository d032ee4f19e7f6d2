"""What each engine runs: image, command and the flags built from the spec.

The flag lists are pure functions of a `LaunchConfig`, one per engine, so a test can feed them to the
launcher's own argparse. Values go into the container's `args` list: no shell is involved. Kubernetes
expands `$(VAR)` in args, which is how LWS's env becomes distributed-init flags; user-supplied
strings are escaped (`$` -> `$$`) so a model path is passed through literally.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..api.spec import SGLangDeploymentSpec
from ..api.speculative import SpeculativeSpec

SERVER_PORT = 30000  # SGLang's default --port; the Service maps spec.service.port onto it
DIST_INIT_PORT = 20000  # rank 0's torch.distributed rendezvous, reached via LWS_LEADER_ADDRESS
RELEASE = "0.1.0"
SHUTDOWN_MARGIN_SECONDS = 5  # leave the kubelet a little time after the runtime's own drain
# With model.hub the download container links the snapshot it fetched here (a per-pod emptyDir), so
# the server's --model-path is known before the hub resolves the revision to a commit.
HUB_MODEL_PATH = "/var/run/sglang-fleet/model"


@dataclass(frozen=True)
class LaunchConfig:
    model_path: str
    served_name: str | None
    tp: int
    pp: int
    group_size: int  # pods per group; > 1 needs the distributed-init flags
    port: int = SERVER_PORT
    shutdown_timeout: int | None = None
    speculative: tuple[str, ...] = ()  # SGLang's --speculative-* flags, the same for both engines

    @classmethod
    def from_spec(cls, spec: SGLangDeploymentSpec) -> "LaunchConfig":
        r = spec.rollout
        return cls(
            model_path=spec.model.path or HUB_MODEL_PATH,
            served_name=spec.model.served_name or (spec.model.hub.id if spec.model.hub else None),
            tp=spec.parallelism.tp,
            pp=spec.parallelism.pp,
            group_size=spec.parallelism.group_size,
            shutdown_timeout=max(1, r.termination_grace_period_seconds - r.drain_seconds - SHUTDOWN_MARGIN_SECONDS),
            speculative=tuple(speculative_flags(spec.speculative)),
        )


def speculative_flags(sp: SpeculativeSpec | None) -> list[str]:
    """spec.speculative as SGLang's flags (docs/speculative-decoding.md)."""
    if sp is None:
        return []
    out = ["--speculative-algorithm", sp.algorithm]
    if sp.draft_model is not None:
        out += ["--speculative-draft-model-path", literal(sp.draft_model.path)]
    for flag, value in (("--speculative-num-steps", sp.num_steps), ("--speculative-eagle-topk", sp.eagle_topk),
                        ("--speculative-num-draft-tokens", sp.num_draft_tokens)):
        if value is not None:
            out += [flag, str(value)]
    return out


def literal(value: str) -> str:
    """Escape a user string so Kubernetes' $(VAR) expansion leaves it unchanged."""
    return value.replace("$", "$$")


def _model_flags(cfg: LaunchConfig) -> list[str]:
    out = ["--model-path", literal(cfg.model_path)]
    if cfg.served_name is not None:
        out += ["--served-model-name", literal(cfg.served_name)]
    return out


def _distributed_flags(cfg: LaunchConfig) -> list[str]:
    if cfg.group_size == 1:
        return []  # one pod: no rendezvous across pods
    return [
        "--dist-init-addr", f"$(LWS_LEADER_ADDRESS):{DIST_INIT_PORT}",
        "--nnodes", "$(LWS_GROUP_SIZE)",
        "--node-rank", "$(LWS_WORKER_INDEX)",
    ]


def radix_args(cfg: LaunchConfig) -> list[str]:
    """Flags for `python -m radix_runtime.launch_server`."""
    args = _model_flags(cfg) + [
        "--host", "0.0.0.0",
        "--port", str(cfg.port),
        "--tp-size", str(cfg.tp),
        "--pp-size", str(cfg.pp),
    ]
    if cfg.shutdown_timeout is not None:
        args += ["--shutdown-timeout", str(cfg.shutdown_timeout)]
    return args + list(cfg.speculative) + _distributed_flags(cfg)


def sglang_args(cfg: LaunchConfig) -> list[str]:
    """Flags for upstream `python3 -m sglang.launch_server`."""
    return _model_flags(cfg) + [
        "--host", "0.0.0.0",
        "--port", str(cfg.port),
        "--tp-size", str(cfg.tp),
        "--pp-size", str(cfg.pp),
        "--enable-metrics",
    ] + list(cfg.speculative) + _distributed_flags(cfg)


@dataclass(frozen=True)
class Engine:
    command: tuple[str, ...]
    build_args: Callable[[LaunchConfig], list[str]]
    default_image: str
    leader_readiness_path: str
    # Upstream images run as root (caches under /root); ours runs as an unprivileged user.
    run_as_user: int | None


ENGINES: dict[str, Engine] = {
    "radix": Engine(
        command=("python", "-m", "radix_runtime.launch_server"),
        build_args=radix_args,
        default_image=f"ghcr.io/sglang-fleet/radix-runtime:{RELEASE}",
        leader_readiness_path="/health_generate",
        run_as_user=1000,
    ),
    "sglang": Engine(
        command=("python3", "-m", "sglang.launch_server"),
        build_args=sglang_args,
        default_image="lmsysorg/sglang:v0.5.2",
        leader_readiness_path="/health_generate",
        run_as_user=None,
    ),
}


def engine_of(spec: SGLangDeploymentSpec) -> Engine:
    return ENGINES[spec.engine]


def container_command(spec: SGLangDeploymentSpec) -> tuple[list[str], list[str]]:
    """(command, args) of the runtime container: generated flags, then spec.runtimeArgs verbatim."""
    engine = engine_of(spec)
    return list(engine.command), engine.build_args(LaunchConfig.from_spec(spec)) + list(spec.runtime_args)
