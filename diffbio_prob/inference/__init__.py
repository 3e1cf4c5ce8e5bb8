"""Fit the models three ways and look at the results with ArviZ.

- ``fit_gradient``: optax on an NNX operator (maximum likelihood, or any loss).
- ``fit_svi`` / ``fit_nuts``: NumPyro SVI and NUTS on a model function, each one compiled program composed
  from NumPyro's public API; NUTS chains run by a chain map (``chain_map``: sequential, vectorised, sharded
  over devices; ``register_chain_map`` adds one). Progress bars report from inside the programs.
- ``FitResult``: draws, pointwise log-likelihood and sampler statistics; ``to_arviz()``, ``summary()``,
  ``save``/``load`` (netCDF).
- ``baum_welch``: the HMM's closed-form EM (``BaumWelchResult``), a maximum-likelihood start for NUTS.
- ``to_operator``: load a posterior mean (or any point estimate) into an operator.
"""

from importlib import import_module

# Eager: jax and numpy only. ``baum_welch`` must be bound here, or importing the submodule of that name
# would leave the package attribute pointing at the module instead of the function.
from diffbio_prob.inference.baum_welch import BaumWelchResult, baum_welch
from diffbio_prob.inference.chains import chain_map, register_chain_map
from diffbio_prob.inference.results import FitResult

# Lazy (PEP 562): optax, flax and NumPyro load only when a fit is asked for, so a Baum-Welch run or
# `import diffbio_prob.inference.baum_welch` does not pay for them.
_LAZY = {
    "fit_gradient": "gradient",
    "negative_log_likelihood": "gradient",
    "fit_nuts": "numpyro_fit",
    "fit_svi": "numpyro_fit",
    "model_sites": "numpyro_fit",
}

__all__ = [
    "BaumWelchResult",
    "FitResult",
    "baum_welch",
    "chain_map",
    "fit_gradient",
    "fit_nuts",
    "fit_svi",
    "model_sites",
    "negative_log_likelihood",
    "register_chain_map",
    "to_operator",
]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def to_operator(result: FitResult, operator, use: str = "mean"):
    """Load a result's point estimate into an operator through its model contract.

    The operator's own ``to_model_params()`` says which sites it takes; only those of the result's values
    are passed to its ``load_model_params`` (a posterior also holds deterministic sites, e.g. ``tpm``).

    Args:
        result: any ``FitResult``.
        operator: an :class:`~diffbio_prob.operators.base.OperatorModule` implementing ``to_model_params``
            and ``load_model_params`` (its NumPyro twin's site names).
        use: ``"mean"`` (posterior mean) or ``"params"`` (the result's own point estimate).

    Returns:
        The operator, updated in place.

    Raises:
        TypeError: ``operator`` is not an operator with that contract.
        ValueError: ``use`` is unknown, or the result has none of the operator's sites.
    """
    from diffbio_prob.operators.base import has_model_twin

    if not has_model_twin(operator):
        raise TypeError(f"operator: expected an OperatorModule implementing to_model_params() and "
                        f"load_model_params(), got {type(operator).__name__}")
    if use not in ("mean", "params"):
        raise ValueError(f"use: expected 'mean' or 'params', got {use!r}")
    values = result.posterior_mean() if use == "mean" else result.params
    sites = list(operator.to_model_params())
    given = {k: values[k] for k in sites if k in values}
    if not given:
        raise ValueError(f"result: has none of the operator's sites {sites} (it has {sorted(values)})")
    loaded = operator.load_model_params(given)
    if loaded is not None and loaded is not operator:
        raise TypeError(f"operator: {type(operator).__name__}.load_model_params returned another object; "
                        "it must update the operator in place and return it")
    return operator
