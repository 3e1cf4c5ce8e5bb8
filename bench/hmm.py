"""HMM benchmark: diffbio-prob's core against hmmlearn (and dynamax when importable), in one process.

Not a test. Prints median-of-N wall times (ms) and ratios for
  1. one sequence, T = 1e5, K = 8 states, M = 4 symbols: log-likelihood; log-likelihood + posteriors;
     Viterbi;
  2. 1000 ragged sequences of ~1000 steps (lengths uniform in 900..1100): log-likelihood + posteriors;
  3. value_and_grad of the log-likelihood w.r.t. (log pi, log A, log B) vs the forward pass alone (custom
     VJP = forward-backward), and plain autodiff through a logsumexp scan for reference.
Goals (issue 2): single sequence at most the peers' time, >= 10x faster than hmmlearn on the ragged batch,
gradient <= 3x forward. JAX runs in float32 (hmmlearn is float64 C++); every JAX call is jitted, warm, and
timed with block_until_ready.

With --batches B1,B2,... only the batch-scaling table runs (issue 14): for each number of sequences B (ragged,
lengths uniform in 90..110, padded to 110; K = 4 states, M = 4 symbols), ours = categorical_posteriors_batch
(per-sequence log-likelihoods + posteriors), AOT-compiled (compile time printed apart), warm median, in chunks
of --chunk sequences (each chunk's posteriors materialised, blocked on, then dropped: a 1e6 x 110 x 4 float32
batch alone is 1.8 GB); peer = hmmlearn CategoricalHMM.score_samples(X, lengths), "log" and "scaling". Where
hmmlearn would take more than --peer-budget s it is timed on the first --peer-subset sequences and scaled by
total steps (its cost is linear in them), marked "extrapolated". Log-likelihood sums and posteriors are
checked on every subset both computed (float32 vs float64; fails above 1e-4).

Run:  .venv/bin/python bench/hmm.py [--repeats 7] [--quick]
      .venv/bin/python bench/hmm.py --batches 1000,10000,100000,1000000 [--repeats 3]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from diffbio_prob.cores import hmm as core


def timeit(fn, repeats: int) -> float:
    """Median wall time in ms over ``repeats`` calls after one warm-up call (the project quotes medians;
    docs/notes/hmm.md section 9 reports peers' best-of, so our medians are the conservative side)."""
    out = fn()
    jax.block_until_ready(out)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def make_model(k: int, m: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    a = np.full((k, k), 0.05 / (k - 1)) + np.eye(k) * (0.95 - 0.05 / (k - 1))  # sticky
    pi = np.full(k, 1.0 / k)
    b = rng.dirichlet(np.ones(m), size=k)
    return pi, a, b


def hmmlearn_model(pi, a, b, implementation="log"):
    from hmmlearn.hmm import CategoricalHMM

    h = CategoricalHMM(n_components=len(pi), n_features=b.shape[1], init_params="", implementation=implementation)
    h.startprob_, h.transmat_, h.emissionprob_ = pi, a, b
    return h


def row(label: str, ours: float, peer: float | None, peer_name: str = "") -> None:
    if peer is None:
        print(f"  {label:<44s} ours {ours:9.2f} ms")
    else:
        print(f"  {label:<44s} ours {ours:9.2f} ms   {peer_name} {peer:9.2f} ms   peer/ours {peer / ours:6.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true",
                        help="T = 2e4 and 200 ragged sequences; with --batches, lengths 18..22")
    parser.add_argument("--batches", help="comma-separated numbers of sequences: run only the batch-scaling table")
    parser.add_argument("--chunk", type=int, default=100_000, help="--batches: sequences per call of ours")
    parser.add_argument("--peer-budget", type=float, default=30.0,
                        help="--batches: seconds hmmlearn may take per B before it is extrapolated")
    parser.add_argument("--peer-subset", type=int, default=10_000,
                        help="--batches: sequences hmmlearn is timed on when extrapolated")
    args = parser.parse_args(argv)
    if args.batches:
        return batch_scaling(args)
    r = args.repeats
    try:
        from dynamax.hidden_markov_model import inference as dyn
    except Exception as exc:  # pragma: no cover - optional peer
        dyn = None
        print(f"dynamax not importable ({exc}); skipping it")
    import hmmlearn

    print(f"jax {jax.__version__} ({jax.default_backend()}), hmmlearn {hmmlearn.__version__}, "
          f"dynamax {'yes' if dyn else 'no'}, {platform.processor() or platform.machine()}, float32")

    k, m = 8, 4
    t_len = 20_000 if args.quick else 100_000
    n_seq = 200 if args.quick else 1000
    pi, a, b = make_model(k, m)
    h = hmmlearn_model(pi, a, b)
    h_scaling = hmmlearn_model(pi, a, b, "scaling")
    x, _ = h.sample(t_len, random_state=0)
    y = x[:, 0]

    params = core.HMMParams(jnp.log(jnp.asarray(pi, jnp.float32)), jnp.log(jnp.asarray(a, jnp.float32)))
    log_b = jnp.log(jnp.asarray(b, jnp.float32))
    yj = jnp.asarray(y, jnp.int32)

    # ---------------------------------------------------------------- 1. one long sequence
    print(f"\n1. one sequence: T = {t_len}, K = {k}, M = {m}")
    ll_fn = jax.jit(lambda p, lb, y: core.log_likelihood(p, core.categorical_log_likelihoods(lb, y)))
    sm_fn = jax.jit(lambda p, lb, y: core.smoother(p, core.categorical_log_likelihoods(lb, y)))
    vit_fn = jax.jit(lambda p, lb, y: core.viterbi(p, core.categorical_log_likelihoods(lb, y)))
    t_ll = timeit(lambda: ll_fn(params, log_b, yj), r)
    t_sm = timeit(lambda: sm_fn(params, log_b, yj), r)
    t_vit = timeit(lambda: vit_fn(params, log_b, yj), r)
    t_h_ll = timeit(lambda: h.score(x), r)
    t_h_sm = timeit(lambda: h.score_samples(x), r)
    t_hs_sm = timeit(lambda: h_scaling.score_samples(x), r)
    t_h_vit = timeit(lambda: h.decode(x, algorithm="viterbi"), r)
    row("log-likelihood", t_ll, t_h_ll, "hmmlearn(log)")
    row("log-likelihood + posteriors", t_sm, t_h_sm, "hmmlearn(log)")
    row("log-likelihood + posteriors", t_sm, t_hs_sm, "hmmlearn(scaling)")
    row("Viterbi", t_vit, t_h_vit, "hmmlearn")
    if dyn is not None:
        pi_j, a_j = jnp.asarray(pi, jnp.float32), jnp.asarray(a, jnp.float32)
        d_ll = jax.jit(lambda lb, y: dyn.hmm_filter(pi_j, a_j, core.categorical_log_likelihoods(lb, y)).marginal_loglik)
        d_sm = jax.jit(lambda lb, y: dyn.hmm_smoother(pi_j, a_j, core.categorical_log_likelihoods(lb, y)))
        d_vit = jax.jit(lambda lb, y: dyn.hmm_posterior_mode(pi_j, a_j, core.categorical_log_likelihoods(lb, y)))
        row("log-likelihood", t_ll, timeit(lambda: d_ll(log_b, yj), r), "dynamax")
        row("log-likelihood + posteriors (+ xi)", t_sm, timeit(lambda: d_sm(log_b, yj), r), "dynamax")
        row("Viterbi", t_vit, timeit(lambda: d_vit(log_b, yj), r), "dynamax")
    ref64 = h.score(x)
    ours32 = float(ll_fn(params, log_b, yj))
    print(f"  float32 log-lik {ours32:.4f} vs hmmlearn float64 {ref64:.4f}: rel. error {abs(ours32 - ref64) / abs(ref64):.1e}")

    # ---------------------------------------------------------------- 2. ragged batch
    rng = np.random.default_rng(1)
    lengths = rng.integers(900, 1101, n_seq)
    seqs = [h.sample(int(n), random_state=i)[0][:, 0] for i, n in enumerate(lengths)]
    t_max = int(lengths.max())
    padded = np.full((n_seq, t_max), -1, np.int32)
    for i, s in enumerate(seqs):
        padded[i, : len(s)] = s
    xcat = np.concatenate(seqs)[:, None]
    pj, lj = jnp.asarray(padded), jnp.asarray(lengths, jnp.int32)
    print(f"\n2. ragged batch: {n_seq} sequences, lengths {lengths.min()}..{lengths.max()} ({lengths.sum()} steps)")

    def batch_lls(lb, y):
        return core.categorical_log_likelihoods(lb, y)  # (B, T, S)

    # the categorical fast path (what the operator, the NumPyro model and Baum-Welch use)
    b_ll = jax.jit(core.categorical_log_likelihood_batch)
    b_sm = jax.jit(core.categorical_posteriors_batch)
    g_sm = jax.jit(lambda p, lb, y, n: core.smoother_batch(p, batch_lls(lb, y), n))
    v_sm = jax.jit(lambda p, lb, y, n: jax.vmap(core.smoother, in_axes=(None, 0, 0))(p, batch_lls(lb, y), n))
    t_bll = timeit(lambda: b_ll(params, log_b, pj, lj), r)
    t_bsm = timeit(lambda: b_sm(params, log_b, pj, lj), r)
    t_gsm = timeit(lambda: g_sm(params, log_b, pj, lj), r)
    t_vsm = timeit(lambda: v_sm(params, log_b, pj, lj), r)
    print(f"  ll + posteriors: categorical_posteriors_batch {t_bsm:.1f} ms, smoother_batch (generic (B, T, S) "
          f"input, + xi) {t_gsm:.1f} ms, vmap(smoother) {t_vsm:.1f} ms")
    rr = max(3, r // 2)
    t_h_bll = timeit(lambda: h.score(xcat, lengths), rr)
    t_h_bsm = timeit(lambda: h.score_samples(xcat, lengths), rr)
    t_hs_bsm = timeit(lambda: h_scaling.score_samples(xcat, lengths), rr)
    row("log-likelihood", t_bll, t_h_bll, "hmmlearn(log)")
    row("log-likelihood + posteriors", t_bsm, t_h_bsm, "hmmlearn(log)")
    row("log-likelihood + posteriors", t_bsm, t_hs_bsm, "hmmlearn(scaling)")
    if dyn is not None:
        # dynamax needs equal lengths: it smooths the padded batch (padding treated as data)
        pi_j, a_j = jnp.asarray(pi, jnp.float32), jnp.asarray(a, jnp.float32)
        d_bsm = jax.jit(lambda lb, y: jax.vmap(lambda ll: dyn.hmm_smoother(pi_j, a_j, ll))(batch_lls(lb, y)))
        row("log-lik + posteriors (padded, no lengths)", t_bsm, timeit(lambda: d_bsm(log_b, pj), r), "dynamax")
    ours_total = float(jnp.sum(b_ll(params, log_b, pj, lj)))
    print(f"  total log-lik ours {ours_total:.3f} vs hmmlearn {h.score(xcat, lengths):.3f}")

    # ---------------------------------------------------------------- 3. gradient vs forward
    print("\n3. value_and_grad w.r.t. (log pi, log A, log B) vs forward")

    # observations are arguments, not closure constants (XLA would constant-fold the emission gather)
    def single(p, lb, y):
        return core.log_likelihood(p, core.categorical_log_likelihoods(lb, y))

    def plain(lp, la, lb, y):
        ll = core.categorical_log_likelihoods(lb, y)

        def step(c, l_t):
            c = jax.scipy.special.logsumexp(c[:, None] + la, axis=0) + l_t
            return c, None

        c, _ = jax.lax.scan(step, lp + ll[0], ll[1:])
        return jax.scipy.special.logsumexp(c)

    fwd = jax.jit(single)
    vg = jax.jit(jax.value_and_grad(single, argnums=(0, 1)))
    pf = jax.jit(plain)
    pvg = jax.jit(jax.value_and_grad(plain, argnums=(0, 1, 2)))
    t_f, t_g = timeit(lambda: fwd(params, log_b, yj), r), timeit(lambda: vg(params, log_b, yj), r)
    t_pf = timeit(lambda: pf(params.log_initial, params.log_transition, log_b, yj), r)
    t_pg = timeit(lambda: pvg(params.log_initial, params.log_transition, log_b, yj), r)
    print(f"  one sequence T={t_len}: forward {t_f:.2f} ms, value_and_grad {t_g:.2f} ms -> grad/forward {t_g / t_f:.2f}x")
    print(f"  plain logsumexp scan + autodiff: forward {t_pf:.2f} ms, value_and_grad {t_pg:.2f} ms "
          f"-> {t_pg / t_pf:.2f}x its forward, {t_pg / t_g:.2f}x our gradient")

    def batch_total(p, lb, y, n):
        return jnp.sum(core.categorical_log_likelihood_batch(p, lb, y, n))

    bf = jax.jit(batch_total)
    bvg = jax.jit(jax.value_and_grad(batch_total, argnums=(0, 1)))  # w.r.t. log pi, log A and log B
    t_bf = timeit(lambda: bf(params, log_b, pj, lj), r)
    t_bg = timeit(lambda: bvg(params, log_b, pj, lj), r)
    print(f"  ragged batch: forward {t_bf:.2f} ms, value_and_grad {t_bg:.2f} ms -> grad/forward {t_bg / t_bf:.2f}x")

    print("\nsummary (peer time / our time; > 1 means we are faster):")
    print(f"  single sequence, ll + posteriors: vs hmmlearn(log) {t_h_sm / t_sm:.2f}x, "
          f"vs hmmlearn(scaling) {t_hs_sm / t_sm:.2f}x")
    print(f"  ragged batch, ll + posteriors:    vs hmmlearn(log) {t_h_bsm / t_bsm:.2f}x, "
          f"vs hmmlearn(scaling) {t_hs_bsm / t_bsm:.2f}x")
    print(f"  gradient / forward: single {t_g / t_f:.2f}x, batch {t_bg / t_bf:.2f}x")
    return 0


# -------------------------------------------------------------------- --batches: scaling in B (issue 14)
def sample_ragged(pi, a, b, n_seq: int, lo: int, hi: int, seed: int = 2):
    """``n_seq`` sequences with lengths uniform in lo..hi, padded to hi with -1: (B, hi) int32, (B,) int32.
    Vectorised over sequences (hmmlearn's ``sample`` is a Python loop per step: minutes at 1e6 x 100)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(lo, hi + 1, n_seq).astype(np.int32)
    cum_a, cum_b = np.cumsum(a, axis=1), np.cumsum(b, axis=1)
    z = np.searchsorted(np.cumsum(pi), rng.random(n_seq), side="right").clip(max=len(pi) - 1)
    obs = np.empty((n_seq, hi), np.int32)
    for t in range(hi):
        if t:
            z = (rng.random(n_seq)[:, None] > cum_a[z]).sum(axis=1).clip(max=len(pi) - 1)
        obs[:, t] = (rng.random(n_seq)[:, None] > cum_b[z]).sum(axis=1).clip(max=b.shape[1] - 1)
    obs[np.arange(hi)[None, :] >= lengths[:, None]] = -1
    return obs, lengths


def time_ours(compiled, params, log_b, chunks, repeats: int):
    """ll + posteriors over ``chunks`` (one chunk's outputs alive at a time): the first call's ms, the warm
    median's ms and its number of calls, and the first chunk's outputs (for the agreement check)."""

    def run():
        for obs, n in chunks[1:]:
            jax.block_until_ready(compiled(params, log_b, obs, n))

    t0 = time.perf_counter()
    head = jax.block_until_ready(compiled(params, log_b, *chunks[0]))
    run()
    first = (time.perf_counter() - t0) * 1e3
    reps = repeats if first < 1e3 else min(repeats, 3 if first < 5e3 else 2)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(params, log_b, *chunks[0]))
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    return first, float(np.median(times)), reps, head


def time_peer(fn, repeats: int):
    """hmmlearn: one timed call; when it takes under a second, it was the warm-up and the median of
    ``repeats`` more is returned (its first call on a small batch is several times slower)."""
    t0 = time.perf_counter()
    out = fn()
    times = [time.perf_counter() - t0]
    if times[0] < 1.0:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3), out


def agreement(ours, peer, lengths) -> tuple[float, float, float, float]:
    """(ours total ll, hmmlearn total ll, relative difference, max |posterior difference|) on one subset."""
    ll, post = ours
    peer_ll, peer_post = peer
    mask = np.arange(post.shape[1])[None, :] < lengths[:, None]
    total = float(np.sum(np.asarray(ll, np.float64)))
    post_diff = float(np.max(np.abs(np.asarray(post)[mask] - peer_post)))
    return total, peer_ll, abs(total - peer_ll) / abs(peer_ll), post_diff


def batch_scaling(args) -> int:
    import hmmlearn

    t_process = time.perf_counter()
    batches = [int(float(x)) for x in args.batches.split(",")]
    k, m = 4, 4
    lo, hi = (18, 22) if args.quick else (90, 110)
    r = args.repeats
    print(f"jax {jax.__version__} ({jax.default_backend()}), hmmlearn {hmmlearn.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
          f"float32 (hmmlearn float64)")
    pi, a, b = make_model(k, m)
    params = core.HMMParams(jnp.log(jnp.asarray(pi, jnp.float32)), jnp.log(jnp.asarray(a, jnp.float32)))
    log_b = jnp.log(jnp.asarray(b, jnp.float32))
    peers = {"log": hmmlearn_model(pi, a, b), "scaling": hmmlearn_model(pi, a, b, "scaling")}
    t0 = time.perf_counter()
    obs_all, len_all = sample_ragged(pi, a, b, max(batches), lo, hi)
    print(f"\nbatch scaling: K = {k}, M = {m}, lengths {lo}..{hi} (padded to {hi}), sequences = prefixes of one "
          f"sample of {max(batches)} ({time.perf_counter() - t0:.1f} s to sample); chunks of {args.chunk}")

    compiled, peer_cache, rows, checks = {}, {}, [], []

    def peer(n_peer: int):
        """hmmlearn's ms per implementation on the first ``n_peer`` sequences (cached), and the log
        implementation's (log-lik sum, posteriors) for the agreement check (dropped once checked)."""
        if n_peer not in peer_cache:
            lens = len_all[:n_peer]
            x = obs_all[:n_peer][np.arange(hi)[None, :] < lens[:, None]][:, None]
            timed = {impl: time_peer(lambda h=h: h.score_samples(x, lens), r) for impl, h in peers.items()}
            peer_cache[n_peer] = ({impl: ms for impl, (ms, _) in timed.items()}, timed["log"][1])
        return peer_cache[n_peer]

    for n_seq in sorted(batches):
        steps = int(len_all[:n_seq].sum())
        size = min(n_seq, args.chunk)
        chunks = [(jnp.asarray(obs_all[i: i + size]), jnp.asarray(len_all[i: i + size]))
                  for i in range(0, n_seq, size)]
        compile_s = 0.0
        for obs, n in chunks:
            if obs.shape not in compiled:
                t0 = time.perf_counter()
                compiled[obs.shape] = core.categorical_posteriors_batch.lower(params, log_b, obs, n).compile()
                compile_s += time.perf_counter() - t0
        first, ours_ms, reps, head = time_ours(compiled[chunks[0][0].shape], params, log_b, chunks, r)
        del chunks

        # hmmlearn's predicted time from its largest run so far (or from the subset, run first)
        known = max(peer_cache, default=None)
        if known is None and n_seq > args.peer_subset:
            known = min(args.peer_subset, n_seq)
            peer(known)
        n_peer = n_seq
        if known is not None:
            predicted = sum(peer_cache[known][0].values()) * steps / int(len_all[:known].sum())
            if predicted > args.peer_budget * 1e3:
                n_peer = min(args.peer_subset, n_seq)
        peer_ms, answer = peer(n_peer)
        peer_steps = int(len_all[:n_peer].sum())
        peer_ms = {impl: ms * steps / peer_steps for impl, ms in peer_ms.items()}
        basis = "measured" if n_peer == n_seq else f"extrapolated from {n_peer}"
        rows.append((n_seq, steps, ours_ms, reps, first, compile_s, peer_ms, basis))

        n_check = min(n_peer, size)  # ours kept the first chunk's outputs
        if answer is not None and n_check not in [c[0] for c in checks]:
            ll_peer, post_peer = answer
            check_steps = int(len_all[:n_check].sum())
            if n_check < n_peer:
                x = obs_all[:n_check][np.arange(hi)[None, :] < len_all[:n_check, None]][:, None]
                ll_peer, post_peer = peers["log"].score(x, len_all[:n_check]), post_peer[:check_steps]
            ours = (head[0][:n_check], head[1][:n_check])
            checks.append((n_check, *agreement(ours, (ll_peer, post_peer), len_all[:n_check])))
        peer_cache[n_peer] = (peer_cache[n_peer][0], None)
        del head, answer

    print("\n| B | steps | ours ms (median of n) | ours us/seq | first call ms | compile s | hmmlearn(log) ms | "
          "hmmlearn(scaling) ms | hmmlearn timing | log/ours | scaling/ours |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n_seq, steps, ours_ms, reps, first, compile_s, peer_ms, basis in rows:
        print(f"| {n_seq} | {steps} | {ours_ms:.1f} ({reps}) | {ours_ms * 1e3 / n_seq:.2f} | {first:.1f} | "
              f"{compile_s:.2f} | {peer_ms['log']:.1f} | {peer_ms['scaling']:.1f} | {basis} | "
              f"{peer_ms['log'] / ours_ms:.2f}x | {peer_ms['scaling'] / ours_ms:.2f}x |")

    ok = True
    print("\n| sequences compared | total log-lik ours (f32) | hmmlearn (f64) | rel. diff | "
          "max abs posterior diff | ok |")
    print("|---|---|---|---|---|---|")
    for n_check, ours_ll, peer_ll, rel, post_diff in checks:
        good = rel < 1e-4 and post_diff < 1e-4 and math.isfinite(ours_ll)
        ok &= good
        print(f"| {n_check} | {ours_ll:.3f} | {peer_ll:.3f} | {rel:.1e} | {post_diff:.1e} | "
              f"{'yes' if good else 'NO'} |")

    (b0, _, o0, *_, p0, _), (b1, _, o1, *_, p1, _) = rows[0], rows[-1]
    print(f"\nas B grows {b0} -> {b1}: hmmlearn(log)/ours {p0['log'] / o0:.2f}x -> {p1['log'] / o1:.2f}x, "
          f"hmmlearn(scaling)/ours {p0['scaling'] / o0:.2f}x -> {p1['scaling'] / o1:.2f}x; "
          f"ours {o0 * 1e3 / b0:.2f} -> {o1 * 1e3 / b1:.2f} us per sequence")
    print(f"agreement (rel. log-lik and max posterior diff < 1e-4): {'ok' if ok else 'FAILED'}")
    print(f"process wall time after imports {time.perf_counter() - t_process:.1f} s, load {os.getloadavg()[0]:.1f}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
