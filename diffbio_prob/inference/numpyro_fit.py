"""Fit a NumPyro model by SVI or NUTS and return a `FitResult`.

Both are composed from NumPyro's public API and run as compiled programs:

- ``fit_nuts``: each chain is one function of its key and the data, built from the kernel protocol
  (``kernel.init``, ``kernel.sample`` in ``numpyro.util.fori_collect``, ``kernel.postprocess_fn``) and the
  pointwise log-likelihood of its draws; a chain map (:mod:`diffbio_prob.inference.chains`) runs it for
  every chain: sequentially, vectorised or sharded over devices. The draws are those of
  ``numpyro.infer.MCMC`` with the same kernel and key (to floating-point rounding).
- ``fit_svi``: the guide's set-up, ``SVI.init``, the steps (``lax.scan`` of ``SVI.update``), the draws and
  the pointwise log-likelihood, all one program. A user's AutoGuide is deep-copied inside the program, so
  the caller's guide keeps no tracer.

Progress bars are driven from inside those programs (:mod:`diffbio_prob.inference.progress`), so a fit
with and without a bar is the same program. Inside a compiled program ``kernel.init`` (NumPyro's search
for a valid start) is traced too, so nothing runs op by op.

The data are inputs of the program (a large data set is not baked into it). A model that needs concrete
values of its data (it converts them to Python numbers or NumPy arrays) cannot be traced that way; for it,
and only for it, the same program is compiled again with the data as constants (``extra["concrete_data"]``
is then True).

Both record the pointwise log-likelihood of every observed site (``numpyro.infer.log_likelihood``, which
includes ``numpyro.factor`` sites), so the ArviZ conversion supports LOO.
"""

from __future__ import annotations

import copy
import functools
import time
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro import handlers
from numpyro.infer import NUTS, SVI, Predictive, Trace_ELBO, init_to_median, init_to_value
from numpyro.infer import log_likelihood as numpyro_log_likelihood
from numpyro.infer.autoguide import AutoDelta, AutoGuide, AutoNormal
from numpyro.optim import optax_to_numpyro
from numpyro.util import fori_collect

from diffbio_prob.inference.chains import chain_map, chain_map_names
from diffbio_prob.inference.progress import Progress, step_counter
from diffbio_prob.inference.results import FitResult

__all__ = ["fit_svi", "fit_nuts", "model_sites", "as_prng_key"]

_TRACE_ERRORS = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
                 jax.errors.TracerIntegerConversionError, jax.errors.TracerBoolConversionError)


def as_prng_key(rng_key, name: str = "rng_key") -> jax.Array:
    """An int seed or a single JAX PRNG key, as a key; anything else is a ``TypeError`` naming ``name``.

    Accepted: a Python or NumPy integer (not a bool), a typed key (``jax.random.key``) of shape ``()`` or a
    raw ``uint32`` key (``jax.random.PRNGKey``) of shape ``(2,)``.
    """
    if isinstance(rng_key, (int, np.integer)) and not isinstance(rng_key, (bool, np.bool_)):
        return jax.random.PRNGKey(int(rng_key))
    if isinstance(rng_key, (jax.Array, np.ndarray)):
        dtype, shape = rng_key.dtype, tuple(rng_key.shape)
        if jnp.issubdtype(dtype, jax.dtypes.prng_key) and shape == ():
            return rng_key
        if dtype == np.uint32 and shape == (2,):
            return jnp.asarray(rng_key)
        raise TypeError(f"{name}: expected an int seed or a single JAX PRNG key, got an array of dtype "
                        f"{dtype} and shape {shape}")
    raise TypeError(f"{name}: expected an int seed or a single JAX PRNG key, got {type(rng_key).__name__} "
                    f"{rng_key!r}")


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
    except _TRACE_ERRORS:
        # a model that branches on the values of its own draws or data can only be traced concretely
        for found in out.values():
            found.clear()
        names()
    return out


def _init_strategy(init_params: Mapping[str, Any] | None):
    if init_params:
        return init_to_value(values={k: np.asarray(v) for k, v in init_params.items()})
    return init_to_median


def _program_inputs(args: tuple, kwargs: dict, *, traced: bool):
    """The model's arguments split into the program's array inputs and a function rebuilding them.

    With ``traced``, array leaves (NumPy or JAX) of ``args``/``kwargs`` are inputs of the program and
    everything else is static; without, there are no inputs and everything is a constant of the program
    (for a model that needs concrete data values).
    """
    leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
    is_input = [traced and isinstance(leaf, (np.ndarray, jax.Array)) for leaf in leaves]
    arrays = [leaf for leaf, inp in zip(leaves, is_input) if inp]

    def rebuild(inputs) -> tuple[tuple, dict]:
        it = iter(inputs)
        return jax.tree_util.tree_unflatten(treedef, [next(it) if inp else leaf for leaf, inp in zip(leaves, is_input)])

    return arrays, rebuild


def _run_program(run: Callable, args: tuple, kwargs: dict):
    """``run(inputs, rebuild)`` with the data as program inputs; for a model that needs concrete data
    values, again with the data as constants of the program. Returns ``(output, concrete_data)``."""
    try:
        return run(*_program_inputs(args, kwargs, traced=True)), False
    except _TRACE_ERRORS:
        return run(*_program_inputs(args, kwargs, traced=False)), True


# ------------------------------------------------------------------------------------------------ SVI
def _guide_copy(guide: AutoGuide) -> AutoGuide:
    """A deep copy of ``guide`` to set up (or use) inside the traced fit: the caller's guide keeps no
    tracer of the program, and is left as it was (not set up, if it was not)."""
    try:
        return copy.deepcopy(guide)
    except jax.errors.UnexpectedTracerError:
        # NumPyro set the guide up inside one of its own transformations (e.g. a first call through
        # Predictive) and it keeps that transformation's tracers; NumPyro's SVI cannot fit it either.
        raise ValueError("guide: this AutoGuide holds tracers of an earlier JAX transformation (it was first "
                         "set up inside one, e.g. by Predictive); pass a new guide") from None


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
            built on ``model`` (left as it was: the fit sets up a copy).
        optimizer: an optax transformation (default ``optax.adam(1e-2)``).
        num_steps: SVI steps.
        num_samples: draws taken from the fitted guide (one chain).
        rng_key: an int seed or a single JAX PRNG key.
        init_params: ``{site: constrained value}`` to start the guide from (e.g. a gradient fit).
        progress: show a progress bar (driven from inside the compiled fit: the same program either way).

    Returns:
        ``FitResult(method="svi")`` with draws of shape ``(1, num_samples, ...)`` for latent and
        deterministic sites, the pointwise log-likelihood, ``loss_history`` (negative ELBO) and ``params``
        (the guide's median). ``extra``: ``"guide"`` (the guide object passed or built),
        ``"svi_params"`` (the fitted guide parameters), ``"concrete_data"``.

    Raises:
        FloatingPointError: the ELBO is non-finite at the end of the fit.

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
    key_fit, key_draw, key_det = jax.random.split(as_prng_key(rng_key), 3)
    optim = optax_to_numpyro(optimizer if optimizer is not None else optax.adam(1e-2))
    sites = model_sites(model, *model_args, **model_kwargs)
    num_steps, num_samples = int(num_steps), int(num_samples)
    bar = Progress(progress, num_steps, lambda _, step: "SVI")

    def fit(inputs, rebuild, guide):
        args, kwargs = rebuild(inputs)
        svi = SVI(model, guide, optim, Trace_ELBO())
        state = svi.init(key_fit, *args, **kwargs)

        def step(carry, _):
            state, count = carry
            state, loss = svi.update(state, *args, **kwargs)
            count = count + 1
            bar.tick(0, count, loss=loss)
            return (state, count), loss

        (state, _), losses = jax.lax.scan(step, (state, step_counter()), None, length=num_steps)
        params = svi.get_params(state)
        draws = Predictive(svi.guide, params=params, num_samples=num_samples)(key_draw, *args, **kwargs)
        draws = {k: v for k, v in draws.items() if k in sites["latent"]}
        if sites["deterministic"]:
            det = Predictive(model, posterior_samples=draws, return_sites=sites["deterministic"])(key_det, *args, **kwargs)
            draws = {**draws, **det}
        ll = numpyro_log_likelihood(model, draws, *args, **kwargs)
        return params, losses, draws, ll, svi.guide.median(params)

    start = time.perf_counter()
    with bar:
        (svi_params, losses, draws, ll, median), concrete = _run_program(
            # the guide is set up inside the program: a fresh copy for each trace, made outside it
            lambda inputs, rebuild: jax.jit(functools.partial(fit, rebuild=rebuild, guide=_guide_copy(guide_obj)))(inputs),
            model_args, model_kwargs)
        losses = np.asarray(losses)
    if not np.all(np.isfinite(losses[-10:])):
        raise FloatingPointError("fit_svi: the ELBO became non-finite; lower the learning rate or check the data")
    elapsed = time.perf_counter() - start
    return FitResult(
        method="svi",
        samples={k: np.asarray(v)[None] for k, v in draws.items()},
        log_likelihood={k: np.asarray(v)[None] for k, v in ll.items()},
        params={k: np.asarray(v) for k, v in median.items()},
        loss_history=losses,
        elapsed_s=elapsed,
        extra={"guide": guide_obj, "svi_params": svi_params, "concrete_data": concrete},
    )


# ----------------------------------------------------------------------------------------------- NUTS
_NUTS_STATS = ("diverging", "energy", "num_steps", "accept_prob")


def _nuts_chain(make_kernel: Callable[[], NUTS], num_warmup: int, num_samples: int, latent: list[str],
                rebuild: Callable, bar: Progress) -> Callable:
    """One NUTS chain and the pointwise log-likelihood of its draws: ``chain(key, index, inputs)``.

    NumPyro's ``MCMC.run`` for one chain, from the kernel protocol: ``kernel.init``, then
    ``num_warmup + num_samples`` calls of ``kernel.sample`` in ``numpyro.util.fori_collect`` (one loop,
    so the sampler is compiled once for both phases), the last ``num_samples`` states kept and mapped to
    constrained values by ``kernel.postprocess_fn``. Also returns the chain's starting potential energy:
    NumPyro checks it when ``kernel.init`` runs eagerly; in a traced program the caller does.
    """

    def chain(key, index, inputs):
        args, kwargs = rebuild(inputs)
        kernel = make_kernel()
        state = kernel.init(key, num_warmup, None, model_args=args, model_kwargs=kwargs)
        to_constrained = kernel.postprocess_fn(args, kwargs)

        def body(val):
            state, count = val
            state = kernel.sample(state, args, kwargs)
            count = count + 1
            bar.tick(index, count, accept=state.mean_accept_prob, steps=state.num_steps)
            return state, count

        def collect(val):
            state = val[0]
            return to_constrained(state.z), {k: getattr(state, k) for k in _NUTS_STATS}

        draws, stats = fori_collect(num_warmup, num_warmup + num_samples, body, (state, step_counter()),
                                    transform=collect, progbar=False)
        ll = numpyro_log_likelihood(kernel.model, {k: v for k, v in draws.items() if k in latent}, *args, **kwargs)
        return draws, stats, ll, state.potential_energy

    return chain


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
        chain_method: a chain map of :mod:`diffbio_prob.inference.chains`: ``"sequential"`` (one compiled
            chain program run per chain), ``"lax_map"`` (one program, chains in turn), ``"vectorized"``
            (one program, chains in lock step) or ``"parallel"`` (chains sharded over devices; on a CPU
            set ``XLA_FLAGS=--xla_force_host_platform_device_count=N``).
        init_params: ``{site: constrained value}`` to start every chain from (e.g. a gradient or EM fit).
        rng_key: an int seed or a single JAX PRNG key; chain ``i`` uses ``jax.random.split(key, num_chains)[i]``
            (the key itself for one chain), as ``numpyro.infer.MCMC`` does.
        progress: show a progress bar per chain (driven from inside the compiled chain: the same program,
            the same draws, either way).
        target_accept_prob, dense_mass, max_tree_depth: NUTS settings.

    Returns:
        ``FitResult(method="nuts")`` with draws ``(chain, draw, ...)``, the pointwise log-likelihood,
        ``sample_stats`` (``diverging``, ``energy``, ``num_steps``, ``accept_prob``) and ``params`` (the
        posterior mean). ``extra``: ``"chain_method"``, ``"concrete_data"``.

    Raises:
        RuntimeError: the log density at a chain's start is not finite.

    Example:
        >>> result = fit_nuts(hmm_model, rolls, num_states=2, num_emissions=6)   # doctest: +SKIP
        >>> result.print_summary()                                               # doctest: +SKIP
    """
    if chain_method not in chain_map_names():
        chain_map(chain_method)  # raises, naming the valid ones
    for name, value in (("num_warmup", num_warmup), ("num_samples", num_samples), ("num_chains", num_chains)):
        if not isinstance(value, (int, np.integer)) or value < (0 if name == "num_warmup" else 1):
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    num_warmup, num_samples, num_chains = int(num_warmup), int(num_samples), int(num_chains)
    key = as_prng_key(rng_key)
    keys = jax.random.split(key, num_chains) if num_chains > 1 else key[None]

    def make_kernel() -> NUTS:
        return NUTS(model, init_strategy=_init_strategy(init_params), target_accept_prob=target_accept_prob,
                    dense_mass=dense_mass, max_tree_depth=max_tree_depth)

    sites = model_sites(model, *model_args, **model_kwargs)
    total = num_warmup + num_samples

    def desc(chain: int, step: int) -> str:
        return f"chain {chain} {'warmup' if step <= num_warmup and num_warmup else 'sample'}"

    bar = Progress(progress, total, desc, bars=num_chains)
    run_chains = chain_map(chain_method)

    def run(inputs, rebuild):
        chain = _nuts_chain(make_kernel, num_warmup, num_samples, sites["latent"], rebuild, bar)
        return run_chains(chain, keys, inputs)

    start = time.perf_counter()
    with bar:
        (samples, stats, ll, start_pe), concrete = _run_program(run, model_args, model_kwargs)
        samples, stats, ll, start_pe = jax.tree_util.tree_map(np.asarray, (samples, stats, ll, start_pe))
    if not np.all(np.isfinite(start_pe)):
        raise RuntimeError("fit_nuts: cannot find valid initial parameters (the log density at the start "
                           "is not finite); check the model, the data and init_params")
    elapsed = time.perf_counter() - start
    result = FitResult(
        method="nuts",
        samples=samples,
        log_likelihood=ll,
        sample_stats=stats,
        elapsed_s=elapsed,
        extra={"chain_method": chain_method, "concrete_data": concrete},
    )
    result.params = result.posterior_mean()
    return result
