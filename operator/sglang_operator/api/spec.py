"""SGLangDeployment: the whole resource (spec + status) as the operator and the CRD see it."""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from .autoscaling import AutoscalingSpec
from .base import ApiModel, Rule
from .env import EnvList
from .kube_types import Image
from .model import ModelSpec
from .names import API_VERSION, KIND
from .parallelism import ParallelismSpec
from .probes import ProbesSpec
from .resources import ResourcesSpec
from .rollout import RolloutSpec
from .router import RouterSpec
from .scheduling import SchedulingSpec
from .secrets import API_KEY_ENV, ApiKeySecret, ImagePullSecrets
from .service import ServiceSpec
from .speculative import SPEC_RULES, SpeculativeSpec
from .status import SGLangDeploymentStatus

Engine = Literal["radix", "sglang"]

# The LeaderWorkerSet, its headless Service and our Service are named after the deployment; pods
# are <name>-<group>-<worker> and StatefulSet revision labels add 11 more characters, all of which
# must stay DNS labels (<= 63), and Service names must start with a letter (DNS-1035).
NAME_RE = "^[a-z]([-a-z0-9]*[a-z0-9])?$"
NAME_MAX = 40


def valid_name(name: str) -> bool:
    return len(name) <= NAME_MAX and re.match(NAME_RE, name) is not None


class SGLangDeploymentSpec(ApiModel):
    """A fleet of SGLang-compatible servers: dp groups of tp*pp/gpusPerPod pods each."""

    model: ModelSpec
    """What to serve."""
    engine: Engine = "radix"
    """radix: the bundled radix-cache runtime; sglang: upstream SGLang (python3 -m sglang.launch_server)."""
    image: Image | None = None
    """Container image; defaults to the engine's image of this release."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    """Pull policy of the runtime image."""
    image_pull_secrets: ImagePullSecrets | None = None
    """Registry credentials for the fleet's pods (runtime and router), as in a pod's imagePullSecrets."""
    parallelism: ParallelismSpec = Field(default_factory=ParallelismSpec)
    """tp, pp, dp and GPUs per pod."""
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    """Per-pod resources."""
    runtime_args: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=128)] = Field(
        default_factory=list
    )
    """Extra server flags appended after the generated ones, one list item per argv element (no shell).
    Kubernetes expands $(VAR) here; write $$ for a literal $."""
    env: EnvList = Field(default_factory=list)
    """Extra environment variables of the runtime container."""
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec)
    """Queue-depth autoscaling of the number of groups."""
    probes: ProbesSpec = Field(default_factory=ProbesSpec)
    """Probe overrides."""
    service: ServiceSpec = Field(default_factory=ServiceSpec)
    """The client-facing Service."""
    scheduling: SchedulingSpec = Field(default_factory=SchedulingSpec)
    """Node selection, tolerations, affinity, priority."""
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    """Rolling update and drain settings."""
    router: RouterSpec | None = None
    """The SGLang model gateway (SMG) in front of the groups: cache-aware routing. Unset: no router."""
    api_key_secret: ApiKeySecret | None = None
    """Require this API key (`Authorization: Bearer KEY`) on every route but /health, /health_generate
    and /metrics. The leader reads it from a Secret through the SGLANG_API_KEY env var, never argv.
    engine: radix only; not with spec.router."""
    speculative: SpeculativeSpec | None = None
    """Speculative decoding (SGLang's --speculative-* flags): a draft model or n-gram lookup proposes
    tokens the target verifies in one forward pass. Unset: off."""

    rules = (
        Rule(
            cel="!has(self.apiKeySecret) || !has(self.engine) || self.engine != 'sglang'",
            message="apiKeySecret needs engine: radix (upstream SGLang takes its key only as the "
            "--api-key flag, which is visible in the process list, and logs it with its server arguments)",
            check=lambda s: s.api_key_secret is None or s.engine != "sglang",
            field_path=".apiKeySecret",
        ),
        Rule(
            cel="!has(self.apiKeySecret) || !has(self.router) || !self.router.enabled",
            message="apiKeySecret cannot be combined with spec.router yet (the router would need the key "
            "as a command-line flag to call the groups)",
            check=lambda s: s.api_key_secret is None or s.router is None or not s.router.enabled,
            field_path=".apiKeySecret",
        ),
        Rule(
            cel=f"!has(self.apiKeySecret) || !has(self.env) || !self.env.exists(e, e.name == '{API_KEY_ENV}')",
            message=f"env must not set {API_KEY_ENV} when apiKeySecret is set (the operator sets it "
            "from the Secret)",
            check=lambda s: s.api_key_secret is None or all(e.name != API_KEY_ENV for e in s.env),
            field_path=".env",
        ),
        *SPEC_RULES,
    )


class ObjectMeta(ApiModel):
    """The parts of metadata the operator reads; everything else is kept as given."""

    model_config = ConfigDict(extra="allow")
    name: str
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None


class SGLangDeployment(ApiModel):
    api_version: Literal[API_VERSION] = API_VERSION  # type: ignore[valid-type]
    kind: Literal[KIND] = KIND  # type: ignore[valid-type]
    metadata: ObjectMeta
    spec: SGLangDeploymentSpec
    status: SGLangDeploymentStatus | None = None

    rules = (
        Rule(
            cel=f"self.metadata.name.size() <= {NAME_MAX} && self.metadata.name.matches('{NAME_RE}')",
            message=f"metadata.name must be at most {NAME_MAX} characters of a-z, 0-9 and '-', "
            "starting with a letter and ending with a letter or digit (it names the LeaderWorkerSet, "
            "its pods and the Service)",
            check=lambda d: valid_name(d.metadata.name),
        ),
    )


def crd_root_rules() -> list[dict[str, Any]]:
    return [r.to_crd() for r in SGLangDeployment.rules]
