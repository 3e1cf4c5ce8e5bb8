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

Both record what ``az.from_numpyro`` records, so ``FitResult.to_arviz()`` has its layout: the pointwise
log-likelihood of every observed site (``numpyro.infer.log_likelihood``, ``numpyro.factor`` sites included:
LOO), the observed values, the model's array arguments (``constant_data``), posterior predictive draws of the
observed sites (``Predictive`` on the model with its observations released by ``handlers.uncondition``, in
the observations' shape; a factor has nothing to draw), optional prior and prior predictive draws, the sampler statistics under
ArviZ's names, and named dimensions (:func:`model_dims`). SVI also records the log densities of the target
and of the guide at each draw (``log_p``, ``log_q``) for ``az.loo_approximate_posterior``.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import time
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
from numpyro import handlers
from numpyro.infer import NUTS, SVI, Predictive, init_to_median, init_to_value
from numpyro.infer import log_likelihood as numpyro_log_likelihood
from numpyro.infer.autoguide import (AutoDelta, AutoGuide, AutoLowRankMultivariateNormal, AutoMultivariateNormal,
                                    AutoNormal)
from numpyro.optim import optax_to_numpyro
from numpyro.util import fori_collect

from diffbio_prob.inference._numpyro_compat import TraceELBOInOrder, bind_submodules, log_density
from diffbio_prob.inference.chains import chain_map, check_chain_method, resolve_chain_method
from diffbio_prob.inference.progress import Progress, step_counter
from diffbio_prob.inference.results import FitResult

__all__ = ["fit_svi", "fit_nuts", "model_sites", "model_dims", "register_dims", "as_prng_key"]

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
    ``observed`` includes ``numpyro.factor`` sites.
    """
    info = _site_info(model, args, kwargs)
    return {"latent": info["latent"], "observed": info["data"] + info["factor"],
            "deterministic": info["deterministic"]}


def _site_info(model: Callable, args: tuple, kwargs: dict) -> dict:
    """Site names by kind (``latent``, ``data``: observed with a distribution, ``factor``,
    ``deterministic``) and the plates each sample site sits in (``plates``: names, outermost first, when
    the plates name every batch axis; what ``az.from_numpyro`` infers its dims from)."""
    out: dict = {"latent": [], "data": [], "factor": [], "deterministic": [], "plates": {}}

    def names():
        trace = handlers.trace(handlers.seed(model, 0)).get_trace(*args, **kwargs)
        for name, site in trace.items():
            if site["type"] == "sample":
                if not site["is_observed"]:
                    out["latent"].append(name)
                else:
                    out["factor" if isinstance(site["fn"], dist.Unit) else "data"].append(name)
                frames = sorted(site["cond_indep_stack"], key=lambda f: f.dim)
                if frames and [f.dim for f in frames] == list(range(-len(frames), 0)) \
                        and len(frames) == len(site["fn"].batch_shape):
                    out["plates"][name] = [f.name for f in frames]
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


# ------------------------------------------------------------------------------------ named dimensions
#: Models of the package whose module keeps a ``DIMS`` table next to the model function.
_DIMS_MODULES = {
    "diffbio_prob.models.nb_glm.nb_glm_model": "diffbio_prob.models.nb_glm",
    "diffbio_prob.models.em.em_model": "diffbio_prob.models.em",
    "diffbio_prob.models.hmm.hmm_model": "diffbio_prob.models.hmm",
}
#: Used while a model's module has no ``DIMS`` of its own (models/hmm.py is another engineer's file).
_FALLBACK_DIMS = {
    "diffbio_prob.models.hmm.hmm_model": {
        "initial_probs": ["state"], "transition_probs": ["from_state", "to_state"],
        "emission_probs": ["state", "symbol"], "observations": ["sequence", "step"], "lengths": ["sequence"],
    },
}
_REGISTERED_DIMS: dict[str, dict[str, list[str]]] = {}


def _model_key(model: Callable) -> str:
    while isinstance(model, functools.partial):
        model = model.func
    return f"{getattr(model, '__module__', '')}.{getattr(model, '__qualname__', type(model).__name__)}"


def _check_dims(dims, name: str = "dims") -> dict[str, list[str]]:
    if dims is None:
        return {}
    if not isinstance(dims, Mapping):
        raise TypeError(f"{name}: expected a dict {{variable: [dimension names]}}, got {type(dims).__name__}")
    out = {}
    for var, names in dims.items():
        if isinstance(names, str) or not isinstance(names, (list, tuple)) or not all(isinstance(d, str) for d in names):
            raise TypeError(f"{name}[{var!r}]: expected a list of dimension names, got {names!r}")
        out[str(var)] = list(names)
    return out


def _check_coords(coords, name: str = "coords") -> dict[str, Any]:
    if coords is None:
        return {}
    if not isinstance(coords, Mapping):
        raise TypeError(f"{name}: expected a dict {{dimension: values}}, got {type(coords).__name__}")
    out = {}
    for dim, values in coords.items():
        if isinstance(values, (str, bytes)) or np.ndim(values) != 1:
            raise TypeError(f"{name}[{dim!r}]: expected a 1-d sequence of coordinate values, got {values!r}")
        out[str(dim)] = list(np.asarray(values).tolist())
    return out


def register_dims(model: Callable, dims: Mapping[str, list[str]]) -> None:
    """Name the dimensions of ``model``'s sites and arguments for every later fit of it (``to_arviz``).

    Example:
        >>> register_dims(my_model, {"theta": ["group"], "y": ["obs"]})          # doctest: +SKIP
    """
    if not callable(model):
        raise TypeError(f"model: expected a model function, got {type(model).__name__}")
    _REGISTERED_DIMS[_model_key(model)] = _check_dims(dims)


def model_dims(model: Callable) -> dict[str, list[str]]:
    """The default dimension names of ``model``'s sites and arguments: registered with
    :func:`register_dims`, or the ``DIMS`` table next to one of the package's models; ``{}`` otherwise."""
    key = _model_key(model)
    if key in _REGISTERED_DIMS:
        return {k: list(v) for k, v in _REGISTERED_DIMS[key].items()}
    if key in _DIMS_MODULES:
        table = getattr(importlib.import_module(_DIMS_MODULES[key]), "DIMS", None)
        if table is not None:
            return {k: list(v) for k, v in table.items()}
    return {k: list(v) for k, v in _FALLBACK_DIMS.get(key, {}).items()}


def _constant_data(model: Callable, args: tuple, kwargs: dict, observed: Mapping[str, np.ndarray]) -> dict:
    """The model's array arguments, by parameter name, that are not observed values (``constant_data``)."""
    try:
        signature = inspect.signature(model)
        bound = signature.bind(*args, **kwargs)
    except (TypeError, ValueError):
        return {}
    found = []
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            found.extend(value.items())
        elif kind is not inspect.Parameter.VAR_POSITIONAL:
            found.append((name, value))
    out = {}
    for name, value in found:
        if not isinstance(value, (np.ndarray, jax.Array)) or jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
            continue
        arr = np.asarray(value)
        if not any(arr.shape == o.shape and np.array_equal(arr, o) for o in observed.values()):
            out[name] = arr
    return out


def _record_dims(model: Callable, info: dict, dims, coords) -> tuple[dict, dict]:
    """Dims for the result: plates (as az.from_numpyro infers them) < the model's table < ``dims``."""
    table = {k: list(v) for k, v in info["plates"].items()}
    table.update(model_dims(model))
    table.update(dims)
    return table, dict(coords)


class _release(handlers.uncondition):
    """``handlers.uncondition`` that draws each observed site in its observation's full shape.

    A distribution may broadcast against its observations in ``log_prob`` (``hmm_model`` scores a
    ``(B, T)`` batch with one ``DiscreteHMM`` of batch shape ``()``); drawn as is it would give one
    sequence. The distribution is expanded to the observation's batch shape first.
    """

    def process_message(self, msg) -> None:
        if msg["type"] == "sample" and msg["is_observed"] and not isinstance(msg["fn"], dist.Unit):
            fn = msg["fn"]
            shape = jnp.shape(msg["value"])
            batch = shape[: len(shape) - len(fn.event_shape)]
            if tuple(batch) != tuple(fn.batch_shape):
                msg["fn"] = fn.expand(jnp.broadcast_shapes(tuple(batch), tuple(fn.batch_shape)))
        super().process_message(msg)


def _observed_and_predictive(model: Callable, info: dict, latent_draws: dict, key, args, kwargs,
                             predictive: bool) -> tuple[dict, dict]:
    """Inside a fit's program: the observed values (one trace at the first draw) and, if asked, posterior
    predictive draws of the observed sites (their observations released), one per posterior draw."""
    if not info["data"]:
        return {}, {}
    first = {k: v[0] for k, v in latent_draws.items()}
    trace = handlers.trace(handlers.seed(handlers.substitute(model, first), 0)).get_trace(*args, **kwargs)
    observed = {k: trace[k]["value"] for k in info["data"]}
    if not predictive:
        return observed, {}
    pp = Predictive(_release(model), posterior_samples=latent_draws, return_sites=list(info["data"]))
    return observed, pp(key, *args, **kwargs)


def _prior_draws(model: Callable, info: dict, num_draws: int, key, model_args, model_kwargs) -> tuple[dict, dict]:
    """``num_draws`` draws of the prior (latent, deterministic) and prior predictive (observed sites), one
    compiled program; each ``(1, num_draws, ...)``."""
    names = info["latent"] + info["deterministic"] + info["data"]

    def run(inputs, rebuild):
        def program(inputs):
            args, kwargs = rebuild(inputs)
            return Predictive(_release(model), num_samples=num_draws, return_sites=names)(key, *args, **kwargs)

        return jax.jit(program)(inputs)

    draws, _ = _run_program(run, model_args, model_kwargs)
    draws = {k: np.asarray(v)[None] for k, v in draws.items()}
    return ({k: v for k, v in draws.items() if k not in info["data"]},
            {k: v for k, v in draws.items() if k in info["data"]})


def _check_record_args(posterior_predictive, prior_draws) -> int:
    if not isinstance(posterior_predictive, (bool, np.bool_)):
        raise TypeError(f"posterior_predictive: expected True or False, got {posterior_predictive!r}")
    if isinstance(prior_draws, (bool, np.bool_)) or not isinstance(prior_draws, (int, np.integer)) or prior_draws < 0:
        raise ValueError(f"prior_draws: expected a non-negative integer (0: no prior draws), got {prior_draws!r}")
    return int(prior_draws)


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


#: ``fit_svi(guide=...)`` names and the AutoGuides they build.
GUIDES = {"normal": AutoNormal, "lowrank": AutoLowRankMultivariateNormal, "full": AutoMultivariateNormal,
          "delta": AutoDelta}


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
    posterior_predictive: bool = True,
    prior_draws: int = 0,
    dims: Mapping[str, list[str]] | None = None,
    coords: Mapping[str, Any] | None = None,
    **model_kwargs,
) -> FitResult:
    """Stochastic variational inference with an automatic guide.

    Args:
        model: a NumPyro model function.
        *model_args, **model_kwargs: passed to the model.
        guide: ``"normal"`` (``AutoNormal``, mean-field), ``"lowrank"`` (``AutoLowRankMultivariateNormal``),
            ``"full"`` (``AutoMultivariateNormal``, a dense covariance), ``"delta"`` (``AutoDelta``, MAP) or
            an AutoGuide built on ``model`` (left as it was: the fit sets up a copy).
        optimizer: an optax transformation (default ``optax.adam(1e-2)``).
        num_steps: SVI steps.
        num_samples: draws taken from the fitted guide (one chain).
        rng_key: an int seed or a single JAX PRNG key.
        init_params: ``{site: constrained value}`` to start the guide from (e.g. a gradient fit).
        progress: show a progress bar (driven from inside the compiled fit: the same program either way).
        posterior_predictive: draw the observed sites once per posterior draw (``posterior_predictive``).
        prior_draws: this many prior and prior predictive draws (0: none).
        dims, coords: ``{variable: [dimension names]}`` and ``{dimension: values}`` for ``to_arviz()``
            (over the model's own names, :func:`model_dims`).

    Returns:
        ``FitResult(method="svi")`` with draws of shape ``(1, num_samples, ...)`` for latent and
        deterministic sites, the pointwise log-likelihood, ``loss_history`` (negative ELBO), ``params``
        (the guide's median), the observed values, constant data, posterior predictive (and prior) draws,
        and ``sample_stats`` ``log_p`` (the model's log joint density) and ``log_q`` (the guide's log
        density) at each draw, for ``az.loo_approximate_posterior`` (not for ``"delta"``: a point mass
        has no density). ``extra``: ``"guide"`` (the guide object passed or built), ``"svi_params"``
        (the fitted guide parameters), ``"concrete_data"``.

    Raises:
        FloatingPointError: the ELBO is non-finite at the end of the fit.

    Example:
        >>> result = fit_svi(hmm_model, rolls, num_states=2, num_emissions=6, num_steps=500)  # doctest: +SKIP
    """
    choices = ", ".join(map(repr, GUIDES))
    if isinstance(guide, str):
        if guide not in GUIDES:
            raise ValueError(f"guide: expected one of {choices} or an AutoGuide, got {guide!r}")
        guide_obj = GUIDES[guide](model, init_loc_fn=_init_strategy(init_params))
    elif isinstance(guide, AutoGuide):
        guide_obj = guide
    else:
        raise TypeError(f"guide: expected one of {choices} or an AutoGuide, got {type(guide).__name__}")
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps: expected a positive integer, got {num_steps!r}")
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples: expected a positive integer, got {num_samples!r}")
    prior_draws = _check_record_args(posterior_predictive, prior_draws)
    dims, coords = _check_dims(dims), _check_coords(coords)
    bind_submodules()
    key = as_prng_key(rng_key)
    key_fit, key_draw, key_det = jax.random.split(key, 3)
    key_pp, key_prior = jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)
    optim = optax_to_numpyro(optimizer if optimizer is not None else optax.adam(1e-2))
    info = _site_info(model, model_args, model_kwargs)
    num_steps, num_samples = int(num_steps), int(num_samples)
    bar = Progress(progress, num_steps, lambda _, step: "SVI")
    densities = not isinstance(guide_obj, AutoDelta)

    def fit(inputs, rebuild, guide):
        args, kwargs = rebuild(inputs)
        svi = SVI(model, guide, optim, TraceELBOInOrder())  # the same program in every process
        state = svi.init(key_fit, *args, **kwargs)

        def step(carry, _):
            state, count = carry
            state, loss = svi.update(state, *args, **kwargs)
            count = count + 1
            bar.tick(0, count, loss=loss)
            return (state, count), loss

        (state, _), losses = jax.lax.scan(step, (state, step_counter()), None, length=num_steps)
        params = svi.get_params(state)
        # every sample site of the guide (its auxiliary latent too): the guide's density needs them all
        one = handlers.trace(handlers.seed(handlers.substitute(svi.guide, params), key_draw)).get_trace(*args, **kwargs)
        guide_sites = [name for name, site in one.items() if site["type"] == "sample"]
        guide_values = Predictive(svi.guide, params=params, num_samples=num_samples,
                                  return_sites=guide_sites)(key_draw, *args, **kwargs)
        draws = {k: v for k, v in guide_values.items() if k in info["latent"]}
        if info["deterministic"]:
            det = Predictive(model, posterior_samples=draws, return_sites=info["deterministic"])(key_det, *args, **kwargs)
            draws = {**draws, **det}
        latent = {k: draws[k] for k in info["latent"]}
        ll = numpyro_log_likelihood(model, latent, *args, **kwargs)
        stats = {}
        if densities:
            stats["log_p"] = jax.vmap(lambda z: log_density(model, args, kwargs, z)[0])(latent)
            stats["log_q"] = jax.vmap(lambda v: log_density(svi.guide, args, kwargs, {**params, **v})[0])(guide_values)
        observed, pp = _observed_and_predictive(model, info, latent, key_pp, args, kwargs, posterior_predictive)
        return params, losses, draws, ll, svi.guide.median(params), stats, observed, pp

    start = time.perf_counter()
    with bar:
        (svi_params, losses, draws, ll, median, stats, observed, pp), concrete = _run_program(
            # the guide is set up inside the program: a fresh copy for each trace, made outside it
            lambda inputs, rebuild: jax.jit(functools.partial(fit, rebuild=rebuild, guide=_guide_copy(guide_obj)))(inputs),
            model_args, model_kwargs)
        losses = np.asarray(losses)
    if not np.all(np.isfinite(losses[-10:])):
        raise FloatingPointError("fit_svi: the ELBO became non-finite; lower the learning rate or check the data")
    elapsed = time.perf_counter() - start
    prior, prior_pred = _prior_draws(model, info, prior_draws, key_prior, model_args, model_kwargs) if prior_draws else ({}, {})
    observed = {k: np.asarray(v) for k, v in observed.items()}
    table, coords = _record_dims(model, info, dims, coords)
    return FitResult(
        method="svi",
        samples={k: np.asarray(v)[None] for k, v in draws.items()},
        log_likelihood={k: np.asarray(v)[None] for k, v in ll.items()},
        sample_stats={k: np.asarray(v)[None] for k, v in stats.items()},
        params={k: np.asarray(v) for k, v in median.items()},
        loss_history=losses,
        elapsed_s=elapsed,
        extra={"guide": guide_obj, "svi_params": svi_params, "concrete_data": concrete},
        posterior_predictive={k: np.asarray(v)[None] for k, v in pp.items()},
        prior=prior,
        prior_predictive=prior_pred,
        observed_data=observed,
        constant_data=_constant_data(model, model_args, model_kwargs, observed),
        dims=table,
        coords=coords,
    )


# ----------------------------------------------------------------------------------------------- NUTS
_NUTS_STATS = ("diverging", "energy", "num_steps", "accept_prob", "potential_energy")


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
            stats = {k: getattr(state, k) for k in _NUTS_STATS}
            return to_constrained(state.z), {**stats, "step_size": state.adapt_state.step_size}

        draws, stats = fori_collect(num_warmup, num_warmup + num_samples, body, (state, step_counter()),
                                    transform=collect, progbar=False)
        ll = numpyro_log_likelihood(kernel.model, {k: v for k, v in draws.items() if k in latent}, *args, **kwargs)
        return draws, stats, ll, state.potential_energy

    return chain


def _arviz_stats(stats: Mapping[str, np.ndarray], max_tree_depth: int) -> dict[str, np.ndarray]:
    """NUTS statistics under ``az.from_numpyro``'s names and conventions (``lp`` is minus the potential
    energy; the tree depth is ``log2(n_steps) + 1``)."""
    out = {
        "lp": -stats["potential_energy"],
        "acceptance_rate": stats["accept_prob"],
        "step_size": stats["step_size"],
        "n_steps": stats["num_steps"],
        "tree_depth": np.log2(stats["num_steps"]).astype(int) + 1,
        "diverging": stats["diverging"],
        "energy": stats["energy"],
    }
    out["reached_max_tree_depth"] = out["tree_depth"] >= max_tree_depth
    return out


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
    posterior_predictive: bool = True,
    prior_draws: int = 0,
    dims: Mapping[str, list[str]] | None = None,
    coords: Mapping[str, Any] | None = None,
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
            set ``XLA_FLAGS=--xla_force_host_platform_device_count=N``; in a job of several processes
            the chains spread over every process's devices, and every process gets all the draws); or
            ``"auto"``: ``"parallel"`` when two or more devices would each run chains (some ``d`` in
            ``2..jax.device_count()`` divides ``num_chains``), else ``"sequential"`` (so on one
            device ``"auto"`` is ``"sequential"``: the same program, the same draws). See
            :func:`~diffbio_prob.inference.chains.resolve_chain_method`.
        init_params: ``{site: constrained value}`` to start every chain from (e.g. a gradient or EM fit).
        rng_key: an int seed or a single JAX PRNG key; chain ``i`` uses ``jax.random.split(key, num_chains)[i]``
            (the key itself for one chain), as ``numpyro.infer.MCMC`` does.
        progress: show a progress bar per chain (driven from inside the compiled chain: the same program,
            the same draws, either way).
        target_accept_prob, dense_mass, max_tree_depth: NUTS settings.
        posterior_predictive: draw the observed sites once per posterior draw (``posterior_predictive``),
            inside each chain's program.
        prior_draws: this many prior and prior predictive draws (0: none).
        dims, coords: ``{variable: [dimension names]}`` and ``{dimension: values}`` for ``to_arviz()``
            (over the model's own names, :func:`model_dims`).

    Returns:
        ``FitResult(method="nuts")`` with draws ``(chain, draw, ...)``, the pointwise log-likelihood,
        ``sample_stats`` under ``az.from_numpyro``'s names (``lp``, ``acceptance_rate``, ``step_size``,
        ``n_steps``, ``tree_depth``, ``reached_max_tree_depth``, ``diverging``, ``energy``), ``params``
        (the posterior mean), the observed values, constant data and posterior predictive (and prior)
        draws. ``extra``: ``"chain_method"`` (the chain map that ran: what ``"auto"`` resolved to),
        ``"concrete_data"``.

    Raises:
        RuntimeError: the log density at a chain's start is not finite.

    Example:
        >>> result = fit_nuts(hmm_model, rolls, num_states=2, num_emissions=6)   # doctest: +SKIP
        >>> result.print_summary()                                               # doctest: +SKIP
    """
    check_chain_method(chain_method)
    for name, value in (("num_warmup", num_warmup), ("num_samples", num_samples), ("num_chains", num_chains)):
        if not isinstance(value, (int, np.integer)) or value < (0 if name == "num_warmup" else 1):
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    chain_method = resolve_chain_method(chain_method, int(num_chains))
    prior_draws = _check_record_args(posterior_predictive, prior_draws)
    dims, coords = _check_dims(dims), _check_coords(coords)
    bind_submodules()
    num_warmup, num_samples, num_chains = int(num_warmup), int(num_samples), int(num_chains)
    key = as_prng_key(rng_key)
    keys = jax.random.split(key, num_chains) if num_chains > 1 else key[None]

    def make_kernel() -> NUTS:
        return NUTS(model, init_strategy=_init_strategy(init_params), target_accept_prob=target_accept_prob,
                    dense_mass=dense_mass, max_tree_depth=max_tree_depth)

    info = _site_info(model, model_args, model_kwargs)
    total = num_warmup + num_samples

    def desc(chain: int, step: int) -> str:
        return f"chain {chain} {'warmup' if step <= num_warmup and num_warmup else 'sample'}"

    bar = Progress(progress, total, desc, bars=num_chains)
    run_chains = chain_map(chain_method)

    def run(inputs, rebuild):
        chain = _nuts_chain(make_kernel, num_warmup, num_samples, info["latent"], rebuild, bar)

        def recorded(key, index, inputs):
            draws, stats, ll, start_pe = chain(key, index, inputs)
            args, kwargs = rebuild(inputs)
            latent = {k: draws[k] for k in info["latent"]}
            # a key of its own, so the chain's draws stay numpyro.infer.MCMC's
            observed, pp = _observed_and_predictive(model, info, latent, jax.random.fold_in(key, 1), args, kwargs,
                                                    posterior_predictive)
            return draws, stats, ll, start_pe, observed, pp

        return run_chains(recorded, keys, inputs)

    start = time.perf_counter()
    with bar:
        out, concrete = _run_program(run, model_args, model_kwargs)
        samples, stats, ll, start_pe, observed, pp = jax.tree_util.tree_map(np.asarray, out)
    if not np.all(np.isfinite(start_pe)):
        raise RuntimeError("fit_nuts: cannot find valid initial parameters (the log density at the start "
                           "is not finite); check the model, the data and init_params")
    elapsed = time.perf_counter() - start
    prior, prior_pred = (_prior_draws(model, info, prior_draws, jax.random.fold_in(key, 2), model_args, model_kwargs)
                         if prior_draws else ({}, {}))
    observed = {k: v[0] for k, v in observed.items()}  # the same values in every chain
    table, coords = _record_dims(model, info, dims, coords)
    result = FitResult(
        method="nuts",
        samples=samples,
        log_likelihood=ll,
        sample_stats=_arviz_stats(stats, max_tree_depth),
        elapsed_s=elapsed,
        extra={"chain_method": chain_method, "concrete_data": concrete},
        posterior_predictive=pp,
        prior=prior,
        prior_predictive=prior_pred,
        observed_data=observed,
        constant_data=_constant_data(model, model_args, model_kwargs, observed),
        dims=table,
        coords=coords,
    )
    result.params = result.posterior_mean()
    return result
