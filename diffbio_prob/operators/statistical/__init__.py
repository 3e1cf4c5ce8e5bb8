"""The statistical operators: HMM, NB-GLM and EM quantifier (DiffBio's API)."""

from importlib import import_module

_MODULES = {
    "DifferentiableHMM": "hmm",
    "HMMConfig": "hmm",
    "DifferentiableNBGLM": "nb_glm",
    "NBGLMConfig": "nb_glm",
    "DifferentiableEMQuantifier": "em_quantification",
    "EMQuantifierConfig": "em_quantification",
}

__all__ = list(_MODULES)


def __getattr__(name):
    if name in _MODULES:
        return getattr(import_module(f"{__name__}.{_MODULES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
