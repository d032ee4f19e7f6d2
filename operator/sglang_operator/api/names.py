"""Names of the SGLangDeployment API (one place; the CRD, the operator and the tests import them)."""

GROUP = "sglangfleet.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "SGLangDeployment"
PLURAL = "sglangdeployments"
SINGULAR = "sglangdeployment"
SHORT_NAMES = ("sgld",)
CRD_NAME = f"{PLURAL}.{GROUP}"
