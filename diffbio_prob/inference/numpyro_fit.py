"""Fit a NumPyro model by SVI or NUTS and return a `FitResult`.

Both record the pointwise log-likelihood of every observed site (``numpyro.infer.log_likelihood``, which
includes ``numpyro.factor`` sites), so the ArviZ conversion supports LOO.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from typing import Any, Callable, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
import numpyro.infer.util as numpyro_infer_util
from numpyro import handlers
from numpyro.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO, init_to_median, init_to_value
from numpyro.infer import log_likelihood as numpyro_log_likelihood
from numpyro.infer.autoguide import AutoDelta, AutoGuide, AutoNormal
from numpyro.infer.svi import SVIRunResult
from numpyro.optim import optax_to_numpyro

from diffbio_prob.inference.results import FitResult

__all__ = ["fit_svi", "fit_nuts", "model_sites"]


def _key(rng_key) -> jax.Array:
    if isinstance(rng_key, (int, np.integer)):
        return jax.random.PRNGKey(int(rng_key))
    return rng_key


def model_sites(model: Callable, *args, **kwargs) -> dict[str, list[str]]:
    """Names of the model's latent, observed and deterministic sites.

    The model is traced abstractly (``jax.eval_shape``): nothing is sampled or compiled, so asking for
    the names costs milliseconds even for models whose prior draws (Dirichlet, gamma) take seconds
    to compile. A model that needs concrete values of its draws is traced once concretely instead.
    """
    out = {"latent": [], "observed": [], "deterministic": []}

    def names():
        trace = handlers.trace(handlers.seed(model, 0)).get_trace(*args, **kwargs)
        for name, site in trace.items():
            if site["type"] == "sample":
                out["observed" if site["is_observed"] else "latent"].append(name)
            elif site["type"] == "deterministic":
                out["deterministic"].append(name)

    try:
        jax.eval_shape(names)
    except jax.errors.ConcretizationTypeError:
        # a model that branches on the values of its own draws can only be traced concretely
        for found in out.values():
            found.clear()
        names()
    return out


_INIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _compiled_initialisation() -> Iterator[None]:
    """Make NumPyro find a single chain's initial point with one compiled program.

    For one chain (SVI's guide set-up, sequential NUTS) ``numpyro.infer.util.find_valid_initial_params``
    evaluates the potential and its gradient op by op, "to avoid compiling"; on a CPU every new op
    shape then costs a ~40 ms XLA compilation, ~10 s for the HMM, against ~1 s for compiling the whole
    search. Handing it a batch of one key takes its compiled ``lax.map`` path; the result is unbatched
    again. Scoped to our own fit calls and serialised, as NumPyro's handlers are not thread-safe anyway.
    """
    original = numpyro_infer_util.find_valid_initial_params

    def batched(rng_key, *args, **kwargs):
        if isinstance(rng_key, jax.core.Tracer) or jnp.ndim(rng_key) != 1:
            return original(rng_key, *args, **kwargs)
        (params, pe, grad), valid = original(rng_key[None], *args, **kwargs)
        first = functools.partial(jax.tree_util.tree_map, lambda x: x[0])
        return (first(params), pe[0], first(grad)), valid[0]

    with _INIT_LOCK:
        numpyro_infer_util.find_valid_initial_params = batched
        try:
            yield
        finally:
            numpyro_infer_util.find_valid_initial_params = original


def _init_strategy(init_params: Mapping[str, Any] | None):
    if init_params:
        return init_to_value(values={k: np.asarray(v) for k, v in init_params.items()})
    return init_to_median


_TRACE_ERRORS = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
                 jax.errors.TracerIntegerConversionError, jax.errors.TracerBoolConversionError)


def _compiled_call(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` as one compiled program instead of hundreds of eager ones.

    NumPyro's ``Predictive`` and ``log_likelihood`` run the model op by op, and on a CPU each new op
    shape costs a ~40 ms compilation; one ``jax.jit`` of the whole call is several times cheaper.
    Array leaves of the arguments are traced inputs (so a large data set is not baked into the
    program as a constant); everything else is static. A model that needs concrete data values is
    run eagerly instead.
    """
    leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
    traced = [isinstance(leaf, (np.ndarray, jax.Array)) for leaf in leaves]

    def call(arrays):
        it = iter(arrays)
        full = [next(it) if t else leaf for leaf, t in zip(leaves, traced)]
        a, k = jax.tree_util.tree_unflatten(treedef, full)
        return fn(*a, **k)

    try:
        return jax.jit(call)([leaf for leaf, t in zip(leaves, traced) if t])
    except _TRACE_ERRORS:
        return fn(*args, **kwargs)


def _svi_steps(svi: SVI, rng_key, num_steps: int, model_args, model_kwargs) -> SVIRunResult:
    """``svi.run(..., progress_bar=False)`` with the data as inputs of the compiled loop.

    NumPyro's own loop closes over the data, which become constants baked into the program: a large
    data set then makes a large program, slow to compile. Here they are arguments.
    """
    state = svi.init(rng_key, *model_args, **model_kwargs)

    def steps(state, *args, **kwargs):
        return jax.lax.scan(lambda s, _: svi.update(s, *args, **kwargs), state, None, length=num_steps)

    state, losses = _compiled_call(steps, state, *model_args, **model_kwargs)
    return SVIRunResult(svi.get_params(state), state, losses)


def _pointwise_log_likelihood(model, flat_samples, chains, draws, args, kwargs) -> dict[str, np.ndarray]:
    ll = _compiled_call(
        lambda samples, *a, **k: numpyro_log_likelihood(model, samples, *a, **k), flat_samples, *args, **kwargs
    )
    return {k: np.asarray(v).reshape((chains, draws) + v.shape[1:]) for k, v in ll.items()}


def fit_svi(
    model: Callable,
    *model_args,
    guide: str | AutoGuide = "normal",
    optimizer: optax.GradientTransformation | None = None,
    num_steps: int = 2000,
    num_samples: int = 1000,
    rng_key: int | jax.Array = 0,
    init_params: Mapping[str, Any] | None = None,
    progress: bool = True,
    **model_kwargs,
) -> FitResult:
    """Stochastic variational inference with an automatic guide.

    Args:
        model: a NumPyro model function.
        *model_args, **model_kwargs: passed to the model.
        guide: ``"normal"`` (``AutoNormal``, mean-field), ``"delta"`` (``AutoDelta``, MAP) or an AutoGuide
            built on ``model``.
        optimizer: an optax transformation (default ``optax.adam(1e-2)``).
        num_steps: SVI steps.
        num_samples: draws taken from the fitted guide (one chain).
        rng_key: an int seed or a JAX key.
        init_params: ``{site: constrained value}`` to start the guide from (e.g. a gradient fit).
        progress: show numpyro's progress bar.

    Returns:
        ``FitResult(method="svi")`` with draws of shape ``(1, num_samples, ...)`` for latent and
        deterministic sites, the pointwise log-likelihood, ``loss_history`` (negative ELBO) and ``params`` (the
        guide's median).

    Example:
        >>> result = fit_svi(hmm_model, rolls, num_states=2, num_emissions=6, num_steps=500)  # doctest: +SKIP
    """
    if isinstance(guide, str):
        guides = {"normal": AutoNormal, "delta": AutoDelta}
        if guide not in guides:
            raise ValueError(f"guide: expected 'normal', 'delta' or an AutoGuide, got {guide!r}")
        guide_obj = guides[guide](model, init_loc_fn=_init_strategy(init_params))
    elif isinstance(guide, AutoGuide):
        guide_obj = guide
    else:
        raise TypeError(f"guide: expected 'normal', 'delta' or an AutoGuide, got {type(guide).__name__}")
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps: expected a positive integer, got {num_steps!r}")
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples: expected a positive integer, got {num_samples!r}")

    key_fit, key_draw, key_det = jax.random.split(_key(rng_key), 3)
    optim = optax_to_numpyro(optimizer if optimizer is not None else optax.adam(1e-2))
    svi = SVI(model, guide_obj, optim, Trace_ELBO())
    start = time.perf_counter()
    with _compiled_initialisation():
        if progress:
            run = svi.run(key_fit, num_steps, *model_args, progress_bar=True, **model_kwargs)
        else:
            run = _svi_steps(svi, key_fit, num_steps, model_args, model_kwargs)
    losses = np.asarray(run.losses)
    if not np.all(np.isfinite(losses[-10:])):
        raise FloatingPointError("fit_svi: the ELBO became non-finite; lower the learning rate or check the data")

    sites = model_sites(model, *model_args, **model_kwargs)
    latent = _compiled_call(
        lambda params, key, *a, **k: Predictive(guide_obj, params=params, num_samples=num_samples)(key, *a, **k),
        run.params, key_draw, *model_args, **model_kwargs,
    )
    latent = {k: v for k, v in latent.items() if k in sites["latent"]}
    if sites["deterministic"]:
        det = _compiled_call(
            lambda draws, key, *a, **k: Predictive(model, posterior_samples=draws, return_sites=sites["deterministic"])(
                key, *a, **k
            ),
            latent, key_det, *model_args, **model_kwargs,
        )
        latent = {**latent, **det}
    ll = _pointwise_log_likelihood(model, latent, 1, num_samples, model_args, model_kwargs)
    elapsed = time.perf_counter() - start
    samples = {k: np.asarray(v)[None] for k, v in latent.items()}
    params = {k: np.asarray(v) for k, v in guide_obj.median(run.params).items()}
    return FitResult(
        method="svi",
        samples=samples,
        log_likelihood=ll,
        params=params,
        loss_history=losses,
        elapsed_s=elapsed,
        extra={"guide": guide_obj, "svi_params": run.params},
    )


def fit_nuts(
    model: Callable,
    *model_args,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 2,
    chain_method: str = "sequential",
    init_params: Mapping[str, Any] | None = None,
    rng_key: int | jax.Array = 0,
    progress: bool = True,
    target_accept_prob: float = 0.8,
    dense_mass: bool = False,
    max_tree_depth: int = 10,
    **model_kwargs,
) -> FitResult:
    """The No-U-Turn sampler on a NumPyro model.

    Args:
        model: a NumPyro model function (discrete latent states must be marginalised, as ours are).
        *model_args, **model_kwargs: passed to the model.
        num_warmup, num_samples, num_chains: sampler sizes.
        chain_method: ``"sequential"``, ``"vectorized"`` or ``"parallel"`` (one chain per device; set
            ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` on a CPU).
        init_params: ``{site: constrained value}`` to start every chain from (e.g. a gradient or EM fit).
        rng_key: an int seed or a JAX key.
        progress: show numpyro's progress bar.
        target_accept_prob, dense_mass, max_tree_depth: NUTS settings.

    Returns:
        ``FitResult(method="nuts")`` with draws ``(chain, draw, ...)``, the pointwise log-likelihood,
        ``sample_stats`` (``diverging``, ``energy``, ``num_steps``, ``accept_prob``) and ``params`` (the
        posterior mean).

    Example:
        >>> result = fit_nuts(hmm_model, rolls, num_states=2, num_emissions=6)   # doctest: +SKIP
        >>> result.print_summary()                                               # doctest: +SKIP
    """
    if chain_method not in ("sequential", "vectorized", "parallel"):
        raise ValueError(f"chain_method: expected 'sequential', 'vectorized' or 'parallel', got {chain_method!r}")
    for name, value in (("num_warmup", num_warmup), ("num_samples", num_samples), ("num_chains", num_chains)):
        if not isinstance(value, (int, np.integer)) or value < (0 if name == "num_warmup" else 1):
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    kernel = NUTS(
        model,
        init_strategy=_init_strategy(init_params),
        target_accept_prob=target_accept_prob,
        dense_mass=dense_mass,
        max_tree_depth=max_tree_depth,
    )
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=progress,
    )
    start = time.perf_counter()
    with _compiled_initialisation():
        mcmc.run(
            _key(rng_key),
            *model_args,
            extra_fields=("diverging", "energy", "num_steps", "accept_prob"),
            **model_kwargs,
        )
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in samples.items()}
    sites = model_sites(model, *model_args, **model_kwargs)
    latent_flat = {k: v for k, v in flat.items() if k in sites["latent"]}
    ll = _pointwise_log_likelihood(model, latent_flat, num_chains, num_samples, model_args, model_kwargs)
    elapsed = time.perf_counter() - start
    stats = {
        k: np.asarray(v).reshape(num_chains, num_samples)
        for k, v in mcmc.get_extra_fields(group_by_chain=True).items()
    }
    result = FitResult(
        method="nuts",
        samples=samples,
        log_likelihood=ll,
        sample_stats=stats,
        elapsed_s=elapsed,
        extra={"mcmc": mcmc},
    )
    result.params = result.posterior_mean()
    return result
