"""diffbio-prob: one likelihood, three ways to fit.

A discrete HMM, a negative-binomial GLM for differential expression and an EM transcript quantifier,
each written once as a pure-JAX core (``diffbio_prob.cores``) and exposed as a Flax NNX operator
(``diffbio_prob.operators.statistical``) and as a NumPyro model (``diffbio_prob.models``).

``enable_compilation_cache()`` keeps JAX's compiled programs on disk for later processes (the CLI does this
by default; from Python it is opt-in, as it changes JAX's global configuration).
"""

from importlib import import_module

from diffbio_prob.compile_cache import enable_compilation_cache

__version__ = "0.1.0"

_OPERATORS = {
    "DifferentiableHMM": "hmm",
    "HMMConfig": "hmm",
    "DifferentiableNBGLM": "nb_glm",
    "NBGLMConfig": "nb_glm",
    "DifferentiableEMQuantifier": "em_quantification",
    "EMQuantifierConfig": "em_quantification",
}

__all__ = [*_OPERATORS, "enable_compilation_cache"]


def __getattr__(name):
    # Lazy: `import diffbio_prob` stays cheap (no flax import) until an operator is asked for.
    if name in _OPERATORS:
        module = import_module(f"diffbio_prob.operators.statistical.{_OPERATORS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'diffbio_prob' has no attribute {name!r}")
