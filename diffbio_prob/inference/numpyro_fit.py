"""Fit a NumPyro model by SVI or NUTS and return a `FitResult`.

Both record the pointwise log-likelihood of every observed site (``numpyro.infer.log_likelihood``, which
includes ``numpyro.factor`` sites), so the ArviZ conversion supports LOO.
"""

from __future__ import annotations

import contextlib
import copy
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
    except _TRACE_ERRORS:
        # a model that branches on the values of its own draws or data can only be traced concretely
        for found in out.values():
            found.clear()
        names()
    return out


_INIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _compiled_initialisation(*, traced_guide: bool = False) -> Iterator[None]:
    """Make NumPyro find a single chain's initial point with one compiled program.

    For one chain (SVI's guide set-up, sequential NUTS) ``numpyro.infer.util.find_valid_initial_params``
    evaluates the potential and its gradient op by op, "to avoid compiling"; on a CPU every new op
    shape then costs a ~40 ms XLA compilation, ~10 s for the HMM, against ~1 s for compiling the whole
    search. Handing it a batch of one key takes its compiled ``lax.map`` path; the result is unbatched
    again. Scoped to our own fit calls and serialised, as NumPyro's handlers are not thread-safe anyway.

    With ``traced_guide`` (an AutoGuide set up while a program is traced, where NumPyro cannot check
    validity anyway and the guide keeps only the point), the search skips the gradient: ~1 s less
    compilation per SVI fit.
    """
    original = numpyro_infer_util.find_valid_initial_params

    def batched(rng_key, *args, **kwargs):
        if isinstance(rng_key, jax.core.Tracer) and traced_guide:
            return original(rng_key, *args, **{**kwargs, "validate_grad": False})
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


def _jitted(fn: Callable, *args, **kwargs) -> Callable:
    """``lambda *lead: fn(*lead, *args, **kwargs)`` compiled with ``jax.jit``, once for all its calls.

    Array leaves of ``args``/``kwargs`` are inputs of the program (a large data set is not baked into it
    as a constant), everything else is static; ``lead`` are array arguments that change between calls.
    """
    leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
    traced = [isinstance(leaf, (np.ndarray, jax.Array)) for leaf in leaves]

    def call(arrays, *lead):
        it = iter(arrays)
        full = [next(it) if t else leaf for leaf, t in zip(leaves, traced)]
        a, k = jax.tree_util.tree_unflatten(treedef, full)
        return fn(*lead, *a, **k)

    jitted = jax.jit(call)
    arrays = [leaf for leaf, t in zip(leaves, traced) if t]
    return lambda *lead: jitted(arrays, *lead)


def _jit_call(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` as one ``jax.jit`` program (see :func:`_jitted`)."""
    return _jitted(fn, *args, **kwargs)()


def _compiled_call(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)`` as one compiled program instead of hundreds of eager ones.

    NumPyro's ``Predictive`` and ``log_likelihood`` run the model op by op, and on a CPU each new op
    shape costs a ~40 ms compilation; one ``jax.jit`` of the whole call is several times cheaper.
    A model that needs concrete data values is run eagerly instead.
    """
    try:
        return _jit_call(fn, *args, **kwargs)
    except _TRACE_ERRORS:
        return fn(*args, **kwargs)


def _tracing_copy(guide: AutoGuide) -> AutoGuide:
    """A copy of ``guide`` to set up inside a traced program.

    An AutoGuide sets itself up (its prototype trace, initial locations, transforms) on first use and
    keeps what it found as attributes; set up under ``jax.jit`` those are tracers of a finished trace.
    The copy takes them; the caller's guide is left as it was (it sets itself up when first used).
    """
    clone = copy.copy(guide)
    for name, value in vars(guide).items():
        if isinstance(value, dict):  # filled in place during set-up
            setattr(clone, name, dict(value))
    return clone


def _svi_program(svi: SVI, num_steps: int, num_samples: int, sites: Mapping[str, list[str]], fit: bool):
    """One SVI fit, and what is read from it, as a single function of the keys and the data.

    With ``fit``: the guide's set-up, ``svi.init`` and ``num_steps`` updates, then the draws; without,
    only the draws from a fitted state. Draws are the guide's latent sites, the model's deterministic
    sites given them and the pointwise log-likelihood; with the guide's median. Compiled as one program,
    NumPyro's set-up (which otherwise runs the model op by op, ~40 ms of XLA compilation per new op
    shape on a CPU: 5-15 s per model) is only traced.
    """
    model, guide = svi.model, svi.guide

    def program(start, key_draw, key_det, *args, **kwargs):
        if fit:
            state = svi.init(start, *args, **kwargs)
            state, losses = jax.lax.scan(lambda s, _: svi.update(s, *args, **kwargs), state, None, length=num_steps)
        else:
            state, losses = start, None
        params = svi.get_params(state)
        draws = Predictive(guide, params=params, num_samples=num_samples)(key_draw, *args, **kwargs)
        draws = {k: v for k, v in draws.items() if k in sites["latent"]}
        if sites["deterministic"]:
            det = Predictive(model, posterior_samples=draws, return_sites=sites["deterministic"])(key_det, *args, **kwargs)
            draws = {**draws, **det}
        ll = numpyro_log_likelihood(model, draws, *args, **kwargs)
        return params, losses, draws, ll, guide.median(params)

    return program


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
        progress: show numpyro's progress bar (NumPyro's own loop, its guide set up op by op). Without
            it, set-up, steps and draws are one compiled program: the same fit, compiled in less time.

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
    sites = model_sites(model, *model_args, **model_kwargs)
    start = time.perf_counter()
    compiled = not progress  # set-up, steps and draws as one compiled program
    if compiled:
        try:
            svi = SVI(model, _tracing_copy(guide_obj), optim, Trace_ELBO())
            with _compiled_initialisation(traced_guide=True):
                svi_params, losses, latent, ll, median = _jit_call(
                    _svi_program(svi, num_steps, num_samples, sites, fit=True),
                    key_fit, key_draw, key_det, *model_args, **model_kwargs)
        except _TRACE_ERRORS:  # a model that needs concrete data values: NumPyro's loop below
            compiled = False
    if not compiled:  # NumPyro's loop (its progress bar) sets the guide up eagerly; then the draws
        svi = SVI(model, guide_obj, optim, Trace_ELBO())
        with _compiled_initialisation():
            run = svi.run(key_fit, num_steps, *model_args, progress_bar=progress, **model_kwargs)
        svi_params, _, latent, ll, median = _compiled_call(
            _svi_program(svi, num_steps, num_samples, sites, fit=False),
            run.state, key_draw, key_det, *model_args, **model_kwargs)
        losses = run.losses
    losses = np.asarray(losses)
    if not np.all(np.isfinite(losses[-10:])):
        raise FloatingPointError("fit_svi: the ELBO became non-finite; lower the learning rate or check the data")
    ll = {k: np.asarray(v).reshape((1, num_samples) + v.shape[1:]) for k, v in ll.items()}
    elapsed = time.perf_counter() - start
    samples = {k: np.asarray(v)[None] for k, v in latent.items()}
    params = {k: np.asarray(v) for k, v in median.items()}
    return FitResult(
        method="svi",
        samples=samples,
        log_likelihood=ll,
        params=params,
        loss_history=losses,
        elapsed_s=elapsed,
        extra={"guide": guide_obj, "svi_params": svi_params},
    )


_NUTS_STATS = ("diverging", "energy", "num_steps", "accept_prob")


def _nuts_program(make_kernel: Callable[[], NUTS], num_warmup: int, num_samples: int,
                  sites: Mapping[str, list[str]]):
    """One chain of a NUTS run, and the pointwise log-likelihood of its draws, as one function.

    The same steps as ``numpyro.infer.MCMC.run`` with sequential chains (one key per chain from
    ``random.split``; per chain ``kernel.init``, then ``num_warmup + num_samples`` calls of
    ``kernel.sample``, the last ``num_samples`` kept and mapped to constrained values), so the draws are
    NumPyro's, bit for bit. Compiled as one program, the kernel's set-up (the model run op by op, ~40 ms
    of XLA compilation per new op shape on a CPU) is only traced; every chain is a call of the same
    compiled program (a ``lax.map`` over the chains compiles ~40% slower for the HMM). Also returns the
    chain's starting potential energy (NumPyro checks it eagerly; here the caller does).
    """
    model = make_kernel().model

    def chain(key, args, kwargs):
        kernel = make_kernel()
        state = kernel.init(key, num_warmup, None, model_args=args, model_kwargs=kwargs)
        start_pe = state.potential_energy
        to_constrained = kernel.postprocess_fn(args, kwargs)

        def keep(s):
            return to_constrained(s.z), {k: getattr(s, k) for k in _NUTS_STATS}

        # One loop over warm-up and sampling, as NumPyro's fori_collect: the sampler's code (the largest
        # part of the program) is compiled once, not once per phase.
        shapes = jax.eval_shape(keep, state)
        kept = jax.tree_util.tree_map(lambda x: jnp.zeros((num_samples,) + x.shape, x.dtype), shapes)

        def body(i, carry):
            s, kept = carry
            s = kernel.sample(s, args, kwargs)
            kept = jax.lax.cond(
                i >= num_warmup,
                lambda k: jax.tree_util.tree_map(lambda a, b: a.at[i - num_warmup].set(b), k, keep(s)),
                lambda k: k,
                kept,
            )
            return s, kept

        _, (draws, stats) = jax.lax.fori_loop(0, num_warmup + num_samples, body, (state, kept))
        latent = {k: v for k, v in draws.items() if k in sites["latent"]}
        ll = numpyro_log_likelihood(model, latent, *args, **kwargs)
        return draws, stats, ll, start_pe

    return lambda key, *args, **kwargs: chain(key, args, kwargs)


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
        progress: show numpyro's progress bar (NumPyro's ``MCMC``). Without it, sequential chains run
            as one compiled program per fit (the kernel's set-up traced, not run op by op): the same
            draws, bit for bit, compiled in less time.
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

    def make_kernel() -> NUTS:
        return NUTS(model, init_strategy=_init_strategy(init_params), target_accept_prob=target_accept_prob,
                    dense_mass=dense_mass, max_tree_depth=max_tree_depth)

    sites = model_sites(model, *model_args, **model_kwargs)
    start = time.perf_counter()
    compiled = not progress and chain_method == "sequential"
    if compiled:
        try:
            one_chain = _jitted(_nuts_program(make_kernel, num_warmup, num_samples, sites),
                                *model_args, **model_kwargs)
            key = _key(rng_key)
            chains = [one_chain(k) for k in (jax.random.split(key, num_chains) if num_chains > 1 else [key])]
            samples, stats, ll, start_pe = jax.tree_util.tree_map(lambda *c: np.stack(c), *chains)
        except _TRACE_ERRORS:  # a model that needs concrete data values: NumPyro's MCMC below
            compiled = False
    if compiled:
        if not np.all(np.isfinite(start_pe)):
            raise RuntimeError("fit_nuts: cannot find valid initial parameters (the log density at the start "
                               "is not finite); check the model, the data and init_params")
        extra = {}
    else:  # NumPyro's MCMC: progress bars, vectorized or parallel chains, a model that needs concrete values
        mcmc = MCMC(make_kernel(), num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                    chain_method=chain_method, progress_bar=progress)
        with _compiled_initialisation():
            mcmc.run(_key(rng_key), *model_args, extra_fields=_NUTS_STATS, **model_kwargs)
        samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
        flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in samples.items()}
        latent_flat = {k: v for k, v in flat.items() if k in sites["latent"]}
        ll = _pointwise_log_likelihood(model, latent_flat, num_chains, num_samples, model_args, model_kwargs)
        stats = {
            k: np.asarray(v).reshape(num_chains, num_samples)
            for k, v in mcmc.get_extra_fields(group_by_chain=True).items()
        }
        extra = {"mcmc": mcmc}
    elapsed = time.perf_counter() - start
    result = FitResult(
        method="nuts",
        samples=samples,
        log_likelihood=ll,
        sample_stats=stats,
        elapsed_s=elapsed,
        extra=extra,
    )
    result.params = result.posterior_mean()
    return result
