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

from diffbio_prob.inference.baum_welch import BaumWelchResult, baum_welch
from diffbio_prob.inference.chains import chain_map, register_chain_map
from diffbio_prob.inference.gradient import fit_gradient, negative_log_likelihood
from diffbio_prob.inference.numpyro_fit import fit_nuts, fit_svi, model_sites
from diffbio_prob.inference.results import FitResult

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


def to_operator(result: FitResult, operator, use: str = "mean"):
    """Load a result's point estimate into an operator that offers ``load_model_params``.

    Args:
        result: any ``FitResult``.
        operator: an operator with ``load_model_params(dict)`` (its NumPyro twin's site names).
        use: ``"mean"`` (posterior mean) or ``"params"`` (the result's own point estimate).

    Returns:
        The operator, updated in place.
    """
    if not hasattr(operator, "load_model_params"):
        raise TypeError(f"operator: {type(operator).__name__} has no load_model_params()")
    if use not in ("mean", "params"):
        raise ValueError(f"use: expected 'mean' or 'params', got {use!r}")
    values = result.posterior_mean() if use == "mean" else result.params
    operator.load_model_params(values)
    return operator
