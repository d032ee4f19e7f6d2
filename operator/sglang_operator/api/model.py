"""spec.model: which weights to serve and where they come from."""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import ApiModel, Rule
from .kube_types import DnsSubdomain, Image

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

    rules = (
        Rule(
            cel="[" + ", ".join(f"has(self.{s})" for s in VOLUME_SOURCES) + "].filter(x, x).size() == 1",
            message="model.volume must set exactly one of " + ", ".join(VOLUME_SOURCES),
            check=lambda v: sum(
                x is not None for x in (v.persistent_volume_claim, v.host_path, v.nfs, v.image)
            )
            == 1,
        ),
    )


class ModelSpec(ApiModel):
    """The model to serve."""

    path: Annotated[str, Field(min_length=1, max_length=1024)]
    """Model directory inside the pod (e.g. under model.volume.mountPath) or a hub id. Passed as one
    argument, never through a shell: spaces and quotes are fine."""
    served_name: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    """Name reported by /v1/models and accepted in requests; defaults to the runtime's choice (the path)."""
    volume: ModelVolume | None = None
    """Volume holding the model files; omit when the path is in the image or a hub id."""
