"""The HMM operator inside a larger NNX model: a neural emission network, trained end to end with optax.

The casino's loaded die gets worse as the night goes on: P(six | loaded) rises with the hour ``c`` in
[0, 1]. A plain HMM has one emission table and cannot say so. Here a Flax NNX module holds the HMM
operator (`DifferentiableHMM`: initial and transition probabilities, trained) next to a small network that
maps the hour to an emission table per state; the HMM's forward pass (`cores.hmm.log_likelihood`, the
operator's own likelihood, with its forward-backward gradient) turns the per-roll emission
log-probabilities into the log-likelihood of whole sessions, and that is the loss. One `nnx.Optimizer`
trains the operator's parameters and the network's together.

Run:  python examples/05_operator_in_nnx_model.py [--small]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from diffbio_prob.cores import hmm as hmm_core
from diffbio_prob.inference.baum_welch import baum_welch
from diffbio_prob.operators.statistical import DifferentiableHMM, HMMConfig

TRANSITIONS = np.array([[0.95, 0.05], [0.10, 0.90]])


def p_six_loaded(hour):
    """The truth: the loaded die's probability of a six, rising from 0.1 to 0.9 over the night."""
    return 0.1 + 0.8 * np.asarray(hour)


def simulate(num_sessions: int, num_rolls: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rolls, hours, states)``, each ``(num_sessions, num_rolls)``; a session is a contiguous stretch of a
    night starting at a random hour."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(0.0, 0.7, (num_sessions, 1))
    hours = start + np.linspace(0.0, 0.3, num_rolls)[None, :]
    states = np.zeros((num_sessions, num_rolls), np.int32)
    states[:, 0] = rng.random(num_sessions) < 0.5
    for t in range(1, num_rolls):
        states[:, t] = rng.random(num_sessions) < TRANSITIONS[states[:, t - 1], 1]
    six = np.where(states == 1, p_six_loaded(hours), 1 / 6)
    other = rng.integers(0, 5, states.shape)  # faces 1-5 share the rest equally
    rolls = np.where(rng.random(states.shape) < six, 5, other).astype(np.int32)
    return rolls, hours, states


class NeuralEmissionHMM(nnx.Module):
    """An HMM whose emission table is a function of a covariate, computed by a small network.

    The operator supplies the initial and transition distributions (its emission logits are frozen: the
    network replaces them); ``log_likelihood`` runs the operator's forward pass on the network's emission
    log-probabilities.
    """

    def __init__(self, num_states: int = 2, num_faces: int = 6, hidden: int = 16, *, rngs: nnx.Rngs):
        self.num_states, self.num_faces = num_states, num_faces
        self.hmm = DifferentiableHMM(
            HMMConfig(num_states=num_states, num_emissions=num_faces, learnable_emissions=False), rngs=rngs
        )
        self.hidden = nnx.Linear(1, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, num_states * num_faces, rngs=rngs)

    def emission_log_probs(self, hours: jax.Array) -> jax.Array:
        """``(T,)`` hours -> ``(T, S, M)`` log p(face | state, hour)."""
        h = jnp.tanh(self.hidden(hours[:, None]))
        logits = self.out(h).reshape(-1, self.num_states, self.num_faces)
        return jax.nn.log_softmax(logits, axis=-1)

    def log_likelihood(self, rolls: jax.Array, hours: jax.Array) -> jax.Array:
        """log p(rolls | hours) of one session, hidden states marginalised by the operator's forward pass."""
        log_b = self.emission_log_probs(hours)
        ll = jnp.take_along_axis(log_b, rolls[:, None, None], axis=-1)[..., 0]  # (T, S)
        return hmm_core.log_likelihood(self.hmm.hmm_params(), ll)

    def __call__(self, rolls: jax.Array, hours: jax.Array) -> jax.Array:
        """Summed log-likelihood of a batch of sessions ``(B, T)``."""
        return jnp.sum(jax.vmap(self.log_likelihood)(rolls, hours))


def main(small: bool = False, seed: int = 0) -> dict:
    """Train end to end; returns the model, the learned P(six | loaded, hour) curve and held-out scores."""
    sessions, rolls_each, steps = (40, 150, 400) if small else (100, 300, 1000)
    rolls, hours, states = simulate(sessions, rolls_each, seed)
    test_rolls, test_hours, _ = simulate(sessions // 2, rolls_each, seed + 1000)
    x, c = jnp.asarray(rolls), jnp.asarray(hours, jnp.result_type(float))

    model = NeuralEmissionHMM(rngs=nnx.Rngs(seed))
    optimizer = nnx.Optimizer(model, optax.adam(0.02), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, c):
        loss, grads = nnx.value_and_grad(lambda m: -m(x, c) / x.size)(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(step(model, optimizer, x, c)) for _ in range(steps)]
    print(f"loss per roll: {losses[0]:.4f} -> {losses[-1]:.4f} after {steps} Adam steps")

    grid = np.linspace(0.0, 1.0, 11)
    probs = np.exp(np.asarray(model.emission_log_probs(jnp.asarray(grid, c.dtype))))  # (11, S, M)
    loaded = int(np.argmax(probs[:, :, 5].mean(0)))
    learned = probs[:, loaded, 5]
    print("hour            ", np.round(grid, 1).tolist())
    print("P(six | loaded) ", np.round(learned.astype(float), 2).tolist())
    print("truth           ", np.round(p_six_loaded(grid), 2).tolist())

    # Held-out sessions: the covariate-aware model against a plain HMM fitted by Baum-Welch.
    held_out = float(model(jnp.asarray(test_rolls), jnp.asarray(test_hours, c.dtype))) / test_rolls.size
    plain = baum_welch(rolls, 2, 6, num_iters=200, seed=seed)
    scorer = DifferentiableHMM(HMMConfig(num_states=2, num_emissions=6)).load_model_params(plain.params)
    plain_held_out = float(jnp.sum(scorer.forward_pass(jnp.asarray(test_rolls)))) / test_rolls.size
    print(f"held-out log-likelihood per roll: neural emissions {held_out:.4f}, plain HMM {plain_held_out:.4f}")
    transition = np.exp(np.asarray(model.hmm.get_log_transition_matrix()))
    order = [1 - loaded, loaded]  # fair first
    return {
        "model": model,
        "losses": np.array(losses),
        "grid": grid,
        "p_six_loaded": learned,
        "transition": transition[np.ix_(order, order)],
        "held_out": held_out,
        "plain_held_out": plain_held_out,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="small sizes (seconds, for tests)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(small=args.small, seed=args.seed)
