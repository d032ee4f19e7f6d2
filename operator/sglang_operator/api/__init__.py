"""The SGLangDeployment API: pydantic models (the source of truth) and the CRD generated from them."""
from .names import API_VERSION, CRD_NAME, GROUP, KIND, PLURAL, SHORT_NAMES, VERSION
from .spec import SGLangDeployment, SGLangDeploymentSpec
from .status import Condition, SGLangDeploymentStatus
from .validate import InvalidSpec, parse_deployment, parse_spec

__all__ = [
    "API_VERSION", "CRD_NAME", "GROUP", "KIND", "PLURAL", "SHORT_NAMES", "VERSION",
    "SGLangDeployment", "SGLangDeploymentSpec", "SGLangDeploymentStatus", "Condition",
    "InvalidSpec", "parse_deployment", "parse_spec",
]
