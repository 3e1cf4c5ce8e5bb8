"""The one place the inference layer imports NumPyro names from outside its top-level public modules.

``log_density`` is documented (NumPyro's "Inference Utilities") but lives in ``numpyro.infer.util``, next to
private helpers; importing it here keeps every other inference module on ``numpyro``, ``numpyro.infer``
and ``numpyro.handlers`` (``tests/inference/test_compiled_fits.py`` checks that), so a NumPyro release that
moves it is fixed in one line.

``TraceELBOInOrder`` works around NumPyro 0.22's ``Trace_ELBO``, whose program text depends on
``PYTHONHASHSEED`` (below); it is built from ``log_density`` and the public handlers.

:func:`bind_submodules` works around an import-order trap: ArviZ 1.x loads NumPyro lazily (``lazy_loader``);
when ``arviz`` is imported before ``numpyro``, ``numpyro.distributions.distribution`` ends up unbound as an
attribute of ``numpyro.distributions``. ``numpyro.factor`` looks ``Unit`` up through it, so every factor site
(``em_model``; the Jacobian factors NUTS adds for ``init_to_value``) fails with "module
'numpyro.distributions' has no attribute 'distribution'" (found running ``examples/01_bayesian_hmm_loo.py``,
which imports arviz first).
"""

import sys

import jax
from numpyro.handlers import replay, seed
from numpyro.infer import Trace_ELBO
from numpyro.infer.util import log_density
from numpyro.util import check_model_guide_match

__all__ = ["TraceELBOInOrder", "bind_submodules", "log_density"]


def bind_submodules() -> None:
    """Bind every imported ``numpyro.*`` submodule as an attribute of its parent where the import left it
    unbound (see the module docstring); a no-op when NumPyro was imported before ArviZ."""
    for name, module in list(sys.modules.items()):
        if not name.startswith("numpyro.") or module is None:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = sys.modules.get(parent_name)
        if parent is not None and not hasattr(parent, child):
            setattr(parent, child, module)


class TraceELBOInOrder(Trace_ELBO):
    """``Trace_ELBO`` (one particle) whose compiled program is the same in every process.

    NumPyro 0.22 (``numpyro/infer/elbo.py``, ``Trace_ELBO.loss_with_mutable_state``) takes the union of the
    model's and the guide's site names as a Python ``set`` and traces the per-site terms in its iteration
    order, i.e. in string-hash order: with another ``PYTHONHASHSEED`` the program text differs, so JAX's
    persistent compilation cache misses in every new process. Here both log densities are summed in trace
    order (``log_density``): the same ELBO, ``log p(x, z) - log q(z)`` with ``z ~ q``, the same key split
    (model, guide) and mutable state; only the summation order of the terms differs (rounding).
    Several particles or ``multi_sample_guide`` fall back to NumPyro's own.
    """

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        if self.num_particles != 1 or self.multi_sample_guide or not self.sum_sites:
            return super().loss_with_mutable_state(rng_key, param_map, model, guide, *args, **kwargs)
        model_key, guide_key = jax.random.split(rng_key)
        guide_lp, guide_trace = log_density(seed(guide, guide_key), args, kwargs, param_map)
        mutable = {name: site["value"] for name, site in guide_trace.items() if site["type"] == "mutable"}
        model_lp, model_trace = log_density(replay(seed(model, model_key), guide_trace), args, kwargs,
                                            {**param_map, **mutable})
        check_model_guide_match(model_trace, guide_trace)
        mutable.update({name: site["value"] for name, site in model_trace.items() if site["type"] == "mutable"})
        return {"loss": guide_lp - model_lp, "mutable_state": mutable or None}
