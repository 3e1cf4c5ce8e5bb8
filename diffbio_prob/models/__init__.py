"""NumPyro primitives on the shared cores: distributions and model functions with priors.

Each model records its pointwise log-likelihood as an observed site, so
``numpyro.infer.log_likelihood`` and ArviZ LOO work on the fitted posterior.
"""

from importlib import import_module

# name -> submodule; one line per public name (each model's owner keeps its own lines).
_MODULES = {
    "DiscreteHMM": "hmm",
    "hmm_model": "hmm",
    "relabel_states": "hmm",
    "interior_params": "hmm",
    "emission_dims": "hmm",
    "nb_glm_model": "nb_glm",
    "NBCounts": "nb_glm",
    "em_model": "em",
    "quant_de_model": "quant_de",
}

__all__ = list(_MODULES)


def __getattr__(name):
    if name in _MODULES:
        return getattr(import_module(f"{__name__}.{_MODULES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
