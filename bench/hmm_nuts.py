"""Bayesian HMM under NUTS: our ``hmm_model`` against NumPyro's enumeration model and a hand-written scan.

Not a test. The dishonest casino (2 states, 6 symbols; fair die, and a loaded die that rolls a six half the
time; switch probabilities 0.05 and 0.1), one simulated sequence per T, the same Dirichlet(1) priors on
the initial, transition and emission probabilities in all three models:

  ours      ``diffbio_prob.models.hmm.hmm_model`` (the core's forward pass, forward-backward custom VJP)
  enum      NumPyro's enumeration model, as in NumPyro's ``hmm_enum`` example: the hidden state is a
            discrete site marked ``enumerate="parallel"`` inside ``numpyro.contrib.control_flow.scan``
            (needs ``funsor``; the row is skipped without it)
  scan      a hand-written ``lax.scan`` logsumexp forward pass and ``numpyro.factor`` (plain autodiff)

Every model runs through the same sampler: NumPyro's functional NUTS (``numpyro.infer.hmc.hmc``) on the
potential from ``numpyro.infer.util.initialize_model``, warmup and sampling in one ``lax.scan``, the
chain program compiled ahead of time (``jit(...).lower(...).compile()``, timed apart) and run once per
chain, every chain from the same starting point. Printed per model:

  ms/leapfrog  compiled sampling wall time / total leapfrog steps (warmup + draws, all chains)
  ms/ESS       compiled sampling wall time / min bulk ESS over every parameter entry, after
               ``relabel_states`` (states ordered by their probability of a six)
and the ratios enum / ours and scan / ours (> 1: ours is faster). Goal (issue 14): >= 5x enumeration per
leapfrog at T = 1e4 on a CPU.

``--grad`` adds a profile of one potential-energy gradient (the cost of a leapfrog step) per model, for
ours with the sequential and the parallel scan and in float32 and float64.

Run:  .venv/bin/python bench/hmm_nuts.py [--small] [--T 2000,10000] [--warmup 500] [--samples 500] [--grad]
      (the enumeration peer needs funsor: PYTHONPATH=<dir with funsor and makefun> or pip install funsor)
"""

from __future__ import annotations

import argparse
import functools
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

NUM_STATES, NUM_SYMBOLS, SIX = 2, 6, 5


def casino(num_steps: int, seed: int = 0) -> np.ndarray:
    """Rolls of the dishonest casino: state 0 fair, state 1 loaded (a six with probability 1/2)."""
    rng = np.random.default_rng(seed)
    trans = np.array([[0.95, 0.05], [0.10, 0.90]])
    emit = np.array([[1 / 6] * 6, [0.1] * 5 + [0.5]])
    z = np.empty(num_steps, int)
    z[0] = rng.choice(2, p=[2 / 3, 1 / 3])
    for t in range(1, num_steps):
        z[t] = rng.choice(2, p=trans[z[t - 1]])
    u = rng.random(num_steps)
    return (u[:, None] > np.cumsum(emit[z], axis=1)).sum(axis=1).astype(np.int32)


# ------------------------------------------------------------------------------------------------
# the three models (same sites, same priors)
# ------------------------------------------------------------------------------------------------
def _priors():
    import numpyro
    import numpyro.distributions as dist

    pi = numpyro.sample("initial_probs", dist.Dirichlet(jnp.ones(NUM_STATES)))
    a = numpyro.sample("transition_probs", dist.Dirichlet(jnp.ones((NUM_STATES, NUM_STATES))).to_event(1))
    b = numpyro.sample("emission_probs", dist.Dirichlet(jnp.ones((NUM_STATES, NUM_SYMBOLS))).to_event(1))
    return pi, a, b


def ours_model(obs, method="auto"):
    from diffbio_prob.models.hmm import hmm_model

    kwargs = {} if method == "auto" else {"method": method}
    hmm_model(obs, num_states=NUM_STATES, num_emissions=NUM_SYMBOLS, **kwargs)


def enum_model(obs):
    """NumPyro's ``hmm_enum`` example (model_1) with our priors: x_t enumerated inside ``scan``."""
    import numpyro
    import numpyro.distributions as dist
    from numpyro.contrib.control_flow import scan

    pi, a, b = _priors()
    x0 = numpyro.sample("x_0", dist.Categorical(pi), infer={"enumerate": "parallel"})
    numpyro.sample("y_0", dist.Categorical(b[x0]), obs=obs[0])

    def transition(x_prev, y):
        x = numpyro.sample("x", dist.Categorical(a[x_prev]), infer={"enumerate": "parallel"})
        numpyro.sample("y", dist.Categorical(b[x]), obs=y)
        return x, None

    scan(transition, x0, obs[1:])


def scan_model(obs):
    """A hand-written logsumexp forward pass over ``lax.scan``, plain autodiff, ``numpyro.factor``."""
    import numpyro

    pi, a, b = _priors()
    log_a, log_b = jnp.log(a), jnp.log(b)
    ll = log_b[:, obs].T  # (T, S)

    def step(log_alpha, ll_t):
        return jax.nn.logsumexp(log_alpha[:, None] + log_a, axis=0) + ll_t, None

    log_alpha, _ = jax.lax.scan(step, jnp.log(pi) + ll[0], ll[1:])
    numpyro.factor("log_likelihood", jax.nn.logsumexp(log_alpha))


def has_funsor() -> bool:
    try:
        import funsor  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------------------------
# one sampler for all
# ------------------------------------------------------------------------------------------------
def _start_values():
    """A common interior start with the states told apart (state 1 likes sixes), for every chain."""
    return {"initial_probs": jnp.array([0.6, 0.4]),
            "transition_probs": jnp.array([[0.9, 0.1], [0.2, 0.8]]),
            "emission_probs": jnp.array([[1 / 6] * 6, [0.15] * 5 + [0.25]])}


def nuts_run(model, obs, num_warmup: int, num_samples: int, num_chains: int, seed: int = 0) -> dict:
    """Compile one chain program (warmup + draws in one scan) ahead of time, run it for every chain."""
    from numpyro.infer import init_to_value
    from numpyro.infer.hmc import hmc
    from numpyro.infer.util import initialize_model

    obs = jnp.asarray(obs)
    info = initialize_model(jax.random.key(seed), model, model_args=(obs,),
                            init_strategy=init_to_value(values=_start_values()))
    init_kernel, sample_kernel = hmc(info.potential_fn, algo="NUTS")

    def chain(key):
        state = init_kernel(info.param_info, num_warmup, rng_key=key)

        def step(state, _):
            state = sample_kernel(state)
            return state, (state.z, state.num_steps, state.diverging)

        _, (z, steps, div) = jax.lax.scan(step, state, None, length=num_warmup + num_samples)
        return z, steps, div

    keys = jax.random.split(jax.random.key(seed + 1), num_chains)
    t0 = time.perf_counter()
    program = jax.jit(chain).lower(keys[0]).compile()
    compile_s = time.perf_counter() - t0
    outs, run_s = [], 0.0
    for k in keys:
        t0 = time.perf_counter()
        out = jax.block_until_ready(program(k))
        run_s += time.perf_counter() - t0
        outs.append(out)
    z = jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x)[num_warmup:] for x in xs]), *[o[0] for o in outs])
    steps = np.stack([np.asarray(o[1]) for o in outs])
    div = np.stack([np.asarray(o[2])[num_warmup:] for o in outs])
    constrained = jax.vmap(jax.vmap(info.postprocess_fn))(z)
    draws = {k: np.asarray(constrained[k]) for k in ("initial_probs", "transition_probs", "emission_probs")}
    return {"compile_s": compile_s, "run_s": run_s, "leapfrogs": int(steps.sum()), "divergences": int(div.sum()),
            "ess": min_bulk_ess(draws), "draws": draws}


def min_bulk_ess(draws: dict) -> float:
    """Min bulk ESS over every parameter entry, after ordering the states by their probability of a six."""
    import arviz as az

    from diffbio_prob.models.hmm import relabel_states

    relabelled = relabel_states(draws, symbol=SIX)
    ess = az.ess(az.convert_to_dataset(relabelled), method="bulk")
    return float(min(float(np.nanmin(ess[k].values)) for k in relabelled))


# ------------------------------------------------------------------------------------------------
# gradient profile
# ------------------------------------------------------------------------------------------------
def grad_ms(model, obs, repeats: int = 20) -> float:
    """Median ms of one jitted value_and_grad of the model's potential energy at the start point."""
    from numpyro.infer import init_to_value
    from numpyro.infer.util import initialize_model

    info = initialize_model(jax.random.key(0), model, model_args=(jnp.asarray(obs),),
                            init_strategy=init_to_value(values=_start_values()))
    fn = jax.jit(jax.value_and_grad(info.potential_fn))
    z = info.param_info.z
    jax.block_until_ready(fn(z))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(z))
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def profile(lengths, models) -> None:
    print("\nGradient of the potential energy (one leapfrog's model cost), median ms")
    print(f"{'T':>7s} {'model':<24s} {'float32':>9s} {'float64':>9s}")
    for t in lengths:
        obs = casino(t)
        for name, model in models.items():
            row = []
            for x64 in (False, True):
                jax.config.update("jax_enable_x64", x64)
                row.append(grad_ms(model, obs))
            jax.config.update("jax_enable_x64", False)
            print(f"{t:7d} {name:<24s} {row[0]:9.3f} {row[1]:9.3f}")


# ------------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--small", action="store_true", help="T=200, 50 warmup + 50 draws (a smoke run)")
    p.add_argument("--T", default="2000,10000", help="comma-separated sequence lengths")
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--models", default="ours,enum,scan")
    p.add_argument("--grad", action="store_true", help="also profile one gradient per model (f32 / f64)")
    args = p.parse_args(argv)
    if args.small:
        args.T, args.warmup, args.samples = "200", 50, 50
    lengths = [int(t) for t in args.T.split(",")]
    names = [m for m in args.models.split(",") if m]
    unknown = sorted(set(names) - {"ours", "enum", "scan"})
    if unknown:
        p.error(f"--models: unknown {unknown}")
    if "enum" in names and not has_funsor():
        print("# enum skipped: funsor is not installed (pip install funsor)")
        names.remove("enum")
    models = {"ours": ours_model, "enum": enum_model, "scan": scan_model}
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, jax {jax.__version__} "
          f"({jax.default_backend()}), float32, {args.chains} chains x {args.warmup} warmup + {args.samples} draws")
    print(f"{'T':>7s} {'model':<6s} {'compile_s':>9s} {'run_s':>8s} {'leapfrogs':>9s} {'ms/leapfrog':>11s} "
          f"{'min_ess':>8s} {'ms/ess':>9s} {'diverg':>6s}")
    results = {}
    for t in lengths:
        obs = casino(t)
        for name in names:
            r = nuts_run(models[name], obs, args.warmup, args.samples, args.chains)
            r["ms_leapfrog"] = r["run_s"] * 1e3 / r["leapfrogs"]
            r["ms_ess"] = r["run_s"] * 1e3 / r["ess"] if r["ess"] > 0 else float("inf")
            results[t, name] = r
            print(f"{t:7d} {name:<6s} {r['compile_s']:9.2f} {r['run_s']:8.2f} {r['leapfrogs']:9d} "
                  f"{r['ms_leapfrog']:11.4f} {r['ess']:8.1f} {r['ms_ess']:9.3f} {r['divergences']:6d}", flush=True)
    if "ours" in names:
        print("\nratios (peer / ours; > 1 = ours faster)")
        print(f"{'T':>7s} {'peer':<6s} {'per_leapfrog':>12s} {'per_ess':>8s}")
        for t in lengths:
            ours = results[t, "ours"]
            for name in names:
                if name == "ours":
                    continue
                r = results[t, name]
                print(f"{t:7d} {name:<6s} {r['ms_leapfrog'] / ours['ms_leapfrog']:12.2f} "
                      f"{r['ms_ess'] / ours['ms_ess']:8.2f}")
    if args.grad:
        prof = {"ours (sequential)": functools.partial(ours_model, method="sequential"),
                "ours (parallel)": functools.partial(ours_model, method="parallel"),
                "scan": scan_model}
        if "enum" in names:
            prof["enum"] = enum_model
        profile(lengths, prof)
    return 0


if __name__ == "__main__":
    sys.exit(main())
