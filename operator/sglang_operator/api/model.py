"""spec.model: which weights to serve and where they come from."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from pydantic.alias_generators import to_snake

from .base import ApiModel, Rule
from .env import KeySelector
from .kube_types import DnsSubdomain, Image, Quantity

AbsPath = Annotated[str, Field(min_length=1, max_length=1024, pattern="^/")]


class PersistentVolumeClaimSource(ApiModel):
    claim_name: DnsSubdomain
    """Name of a PersistentVolumeClaim in the deployment's namespace."""


class HostPathSource(ApiModel):
    path: AbsPath
    """Directory on the node."""


class NfsSource(ApiModel):
    server: Annotated[str, Field(min_length=1, max_length=253)]
    """NFS server host name or IP."""
    path: AbsPath
    """Exported directory."""


class ImageSource(ApiModel):
    reference: Image
    """OCI image (artifact) that holds the model files (Kubernetes image volumes)."""
    pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    """Image pull policy for the model image."""


def exactly_one(where: str, sources: tuple[str, ...]) -> Rule:
    """The rule of a volume-like object: exactly one of these (camelCase) fields is set."""
    attrs = tuple(to_snake(s) for s in sources)
    return Rule(
        cel="[" + ", ".join(f"has(self.{s})" for s in sources) + "].filter(x, x).size() == 1",
        message=f"{where} must set exactly one of " + ", ".join(sources),
        check=lambda v: sum(getattr(v, a) is not None for a in attrs) == 1,
    )


VOLUME_SOURCES = ("persistentVolumeClaim", "hostPath", "nfs", "image")


class ModelVolume(ApiModel):
    """Volume that holds the model; mounted read-only into every pod of a group. Set exactly one source."""

    persistent_volume_claim: PersistentVolumeClaimSource | None = None
    """Mount an existing PersistentVolumeClaim."""
    host_path: HostPathSource | None = None
    """Mount a directory of the node (pre-staged weights)."""
    nfs: NfsSource | None = None
    """Mount an NFS export."""
    image: ImageSource | None = None
    """Mount an OCI image as a volume."""
    mount_path: AbsPath = "/models"
    """Where the volume appears inside the container."""
    read_only: bool = True
    """Mount read-only (set false to let the runtime download into the volume)."""

    rules = (exactly_one("model.volume", VOLUME_SOURCES),)


# A hub repo id: [org/]name of letters, digits, '-', '_' and '.' (huggingface_hub's validate_repo_id).
HUB_ID_RE = "^([A-Za-z0-9][-A-Za-z0-9_.]{0,95}/)?[A-Za-z0-9][-A-Za-z0-9_.]{0,95}$"
DEFAULT_REVISION = "main"


class CacheEmptyDir(ApiModel):
    size_limit: Quantity | None = None
    """Cap on the pod's copy (the kubelet evicts the pod above it), e.g. 40Gi."""


class ModelCache(ApiModel):
    """Where hub downloads are kept. Set exactly one source. A ReadWriteMany PVC is shared by every
    pod of every group (the model is downloaded once); a hostPath by the pods of one node; an
    emptyDir lives and dies with its pod."""

    persistent_volume_claim: PersistentVolumeClaimSource | None = None
    """An existing PersistentVolumeClaim (ReadWriteMany to share it across nodes)."""
    host_path: HostPathSource | None = None
    """A directory of the node (created if missing; it must be writable by uid 1000 for engine radix)."""
    empty_dir: CacheEmptyDir | None = None
    """A per-pod scratch volume: every pod downloads its own copy."""

    rules = (exactly_one("model.hub.cache", ("persistentVolumeClaim", "hostPath", "emptyDir")),)


class HubSource(ApiModel):
    """A model on the Hugging Face hub (or a mirror that speaks its API), downloaded by an init
    container of every pod into model.hub.cache before the server starts."""

    id: Annotated[
        str,
        Field(min_length=1, max_length=192, pattern=HUB_ID_RE),
        Rule(
            cel="!self.contains('--') && !self.contains('..')",
            message="model.hub.id must not contain '--' or '..' (the hub refuses such repo ids)",
            check=lambda v: "--" not in v and ".." not in v,
        ),
    ]
    """Repo id, e.g. meta-llama/Llama-3.1-8B-Instruct."""
    revision: Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\s]+$")] | None = None
    """Branch, tag or commit; main when unset. Pods resolve a branch when they start, so pin a commit
    to keep every group on the same weights."""
    token_secret: KeySelector | None = None
    """A key of a Secret holding a hub token (gated or private repos). Given to the download container
    as HF_TOKEN, never in argv; the server container does not get it."""
    endpoint: Annotated[str, Field(max_length=1024, pattern=r"^https?://[^\s]+$")] | None = None
    """Hub URL (HF_ENDPOINT), for a mirror or proxy; https://huggingface.co when unset."""
    cache: ModelCache | None = None
    """Volume the download goes into; a per-pod emptyDir when unset."""

    @property
    def effective_revision(self) -> str:
        return self.revision or DEFAULT_REVISION


class ModelSpec(ApiModel):
    """The model to serve: a path in the pod (model.path, optionally on model.volume: PVC, hostPath,
    NFS or an OCI image) or a hub repo the pods download (model.hub). Set exactly one of path, hub."""

    path: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    """Model directory inside the pod (e.g. under model.volume.mountPath), or a hub id the engine
    downloads itself. Passed as one argument, never through a shell: spaces and quotes are fine."""
    hub: HubSource | None = None
    """Download this hub repo before the server starts (progress in the pod log, ModelDownloading
    condition, a Degraded reason when it fails)."""
    served_name: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """Name reported by /v1/models and accepted in requests; defaults to model.hub.id, else the
    runtime's choice (the path)."""
    volume: ModelVolume | None = None
    """Volume holding the model files; omit when the path is in the image or a hub id."""

    rules = (
        Rule(
            cel="has(self.path) != has(self.hub)",
            message="model must set exactly one of path (a directory in the pod) and hub (a repo the "
            "pods download)",
            check=lambda m: (m.path is None) != (m.hub is None),
        ),
        Rule(
            cel="!has(self.hub) || !has(self.volume)",
            message="model.volume cannot be combined with model.hub (the download goes into model.hub.cache)",
            check=lambda m: m.hub is None or m.volume is None,
            field_path=".volume",
        ),
    )
