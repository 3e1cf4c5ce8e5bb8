"""Differential expression from quantification uncertainty: ``quant_de_model``.

One hierarchical model from salmon's inferential replicates (bootstrap or Gibbs draws) to log fold
changes. For feature ``t`` (transcript or gene) and sample ``j``:

- latent true log expression ``eta_tj = offset_tj + b0_t + x_j * b1_t + e_tj`` with biological
  variation ``e_tj ~ N(0, sigma_t)`` (log-normal expression noise around the condition means);
- ``offset_tj = log s_j (+ log relative length)``: library size (and, at gene level, average-length)
  normalisation, given as data;
- the measurement: the replicates of sample ``j`` give ``m_tj`` (mean of ``log(count + 0.5)`` over
  the draws) and ``v_tj`` (their variance: read sampling plus multi-mapping ambiguity), used as
  ``m_tj ~ N(eta_tj, sqrt(v_tj))``.

Priors, shared across features so that a 2 vs 2 design borrows strength:

- ``log sigma_t = sig_mu + sig_slope * z_t + sig_tau * sig_raw_t`` (non-centred), ``z_t`` the
  standardised mean log expression of the feature (a fitted mean-variance trend);
- ``b1_t ~ w_0 delta_0 + sum_k w_k N(0, scale_k)``: an adaptive-shrinkage (ash-like) prior: a point
  mass at zero plus a scale mixture on a fixed grid, with Dirichlet weights ``w`` learned from all
  features under ashr's null-biased Dirichlet (concentration 10 on the point mass, 1 on the others);
  null features shrink to zero, real changes live in the wide components (a discrete spike-and-slab /
  "horseshoe-lite");
- ``b0_t ~ N(m0_t, 10)`` centred on the feature's data mean (weak);
- ``v_scale ~ LogNormal(0, 0.5)``: one factor on every replicate variance, ``m_tj ~ N(eta_tj,
  sqrt(v_scale * v_tj))``, since bootstraps are known to understate the quantification error of
  ambiguous features (it is identified against ``sigma_t`` because ``v`` varies with depth and
  ``sigma`` does not).

**Collapsed.** Given ``sigma_t`` everything is Gaussian, so ``e_tj``, ``b0_t``, ``b1_t`` and the
mixture component are integrated out exactly (:func:`collapsed_terms`: 2 x 2 algebra per feature and
component). The sampled latents are only the noise sds and the hyperparameters; the exact conditional
posterior of ``b1`` given them is a K-component normal mixture per feature, which the workflow draws
from (Rao-Blackwellised lfsr). This is what makes SVI usable: a Gaussian guide on ``b1`` under a spiky
mixture prior pushes the learned weights away from the narrow components and over-calls nulls.

Sites (``N`` samples, ``T`` features): ``sig_raw`` ``(T,)``; ``sig_mu``, ``sig_slope``, ``sig_tau``, ``v_scale``,
``mix_weights`` ``(K,)`` (latent); ``sigma`` ``(T,)`` (deterministic); ``m`` (observed, shape ``(T, N)``:
one event per feature, so its pointwise log-likelihood is per feature, what ArviZ LOO uses).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

__all__ = ["DEFAULT_LFC_SCALES", "NULL_WEIGHT", "CollapsedFeatureLikelihood", "collapsed_terms", "quant_de_model"]

#: Natural-log scales of the mixture prior on ``b1`` (from "essentially null" to very large changes).
#: The first, 0, is a point mass at "no change" (ash's null component): the lfsr then counts it on both
#: sides of zero, so a feature's lfsr is at least its probability of being null.
DEFAULT_LFC_SCALES = (0.0, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)
B0_PRIOR_SD = 10.0
#: Dirichlet concentration of the point-mass component (the others get 1): ashr's "nullbiased" prior
#: (``nullweight = 10``, Stephens 2017). Without it the tiny-scale components, indistinguishable from
#: zero at 2-3 replicates, take the null mass and the lfsr stops counting those features as null.
NULL_WEIGHT = 10.0
V_SCALE_SD = 0.5
_LOG2PI = math.log(2.0 * math.pi)


def collapsed_terms(y, v, x, m0, sigma, log_w, scales, b0_sd=B0_PRIOR_SD):
    """Per feature and mixture component: the marginal log-likelihood and ``b1``'s conditional posterior.

    Args:
        y: ``(T, N)`` ``m - offset``; v: ``(T, N)`` measurement variances; x: ``(N,)`` design values;
        m0: ``(T,)`` prior mean of ``b0``; sigma: ``(T,)`` biological sds; log_w: ``(K,)`` log mixture
        weights; scales: ``(K,)`` prior sds of ``b1``.

    Returns:
        ``(loglik (T,), log_post (T, K), mean (T, K), sd (T, K))``: ``log p(y_t | sigma_t, w)`` with
        ``b0``, ``b1`` and the component integrated out; the log posterior component probabilities; the
        mean and sd of ``b1`` given the component.
    """
    w = 1.0 / (sigma[:, None] ** 2 + v)                      # (T, N)
    e = y - m0[:, None]
    g00 = w.sum(-1)
    g01 = (w * x).sum(-1)
    g11 = (w * x * x).sum(-1)
    c0 = (w * e).sum(-1)
    c1 = (w * x * e).sum(-1)
    log_n0 = 0.5 * (jnp.log(w) - _LOG2PI - w * e * e).sum(-1)  # (T,)
    s2 = jnp.asarray(scales) ** 2                              # (K,)
    spike = s2 <= 0.0                                          # point mass at b1 = 0
    s2_safe = jnp.where(spike, 1.0, s2)
    a00 = (g00 + 1.0 / b0_sd ** 2)[:, None]
    a01 = g01[:, None]
    a11 = g11[:, None] + 1.0 / s2_safe[None, :]
    det = a00 * a11 - a01 ** 2
    quad = (a11 * c0[:, None] ** 2 - 2.0 * a01 * c0[:, None] * c1[:, None] + a00 * c1[:, None] ** 2) / det
    marg = log_n0[:, None] - 0.5 * (2.0 * math.log(b0_sd) + jnp.log(s2_safe)[None, :] + jnp.log(det)) + 0.5 * quad
    # b1 = 0 exactly: only b0 is integrated out
    marg0 = log_n0 - 0.5 * (2.0 * math.log(b0_sd) + jnp.log(a00[:, 0])) + 0.5 * c0 ** 2 / a00[:, 0]
    marg = jnp.where(spike[None, :], marg0[:, None], marg)
    joint = log_w[None, :] + marg
    loglik = jax.scipy.special.logsumexp(joint, axis=-1)
    log_post = joint - loglik[:, None]
    mean = jnp.where(spike[None, :], 0.0, (a00 * c1[:, None] - a01 * c0[:, None]) / det)
    sd = jnp.where(spike[None, :], 0.0, jnp.sqrt(a00 / det))
    return loglik, log_post, mean, sd


class CollapsedFeatureLikelihood(dist.Distribution):
    """The law of one feature's ``N`` measurements ``y_t`` given its noise sd and the mixture weights,
    with ``b0``, ``b1``, the component and ``e`` integrated out (batch ``T``, event ``N``).

    ``y`` passed to :meth:`log_prob` is ``m - offset`` (``(T, N)``). Sampling is not supported (the
    model is for fitting).
    """

    arg_constraints = {"sigma": constraints.positive}
    support = constraints.real_vector

    def __init__(self, v, x, m0, sigma, log_w, scales, validate_args=None):
        self.v, self.x, self.m0, self.sigma, self.log_w, self.scales = v, x, m0, sigma, log_w, scales
        super().__init__(batch_shape=jnp.shape(v)[:1], event_shape=jnp.shape(v)[1:], validate_args=validate_args)

    def log_prob(self, value):
        return collapsed_terms(value, self.v, self.x, self.m0, self.sigma, self.log_w, self.scales)[0]

    def sample(self, key, sample_shape=()):
        raise NotImplementedError("CollapsedFeatureLikelihood: sampling is not supported")


def quant_de_model(m, v, x, offset, z, m0, *, scales=DEFAULT_LFC_SCALES, null_weight=NULL_WEIGHT):
    """NumPyro model of the per-sample bootstrap summaries.

    Args:
        m: ``(N, T)`` bootstrap mean of ``log(count + 0.5)``.
        v: ``(N, T)`` bootstrap variance of the same (positive).
        x: ``(N,)`` centred condition indicator (e.g. -1/2, +1/2).
        offset: ``(N, T)`` or ``(N,)`` log normalisation offset.
        z: ``(T,)`` standardised feature covariate of the noise trend.
        m0: ``(T,)`` centre of the ``b0`` prior (data mean of ``m - offset``).
        scales: the mixture grid (natural log); a 0 is the point mass at no change.
        null_weight: Dirichlet concentration of the point mass (1 for the others).
    """
    v = jnp.asarray(v)
    n, t = v.shape
    x = jnp.asarray(x, dtype=v.dtype)
    offset = jnp.asarray(offset, dtype=v.dtype)
    offset = jnp.broadcast_to(offset if offset.ndim == 2 else offset[:, None], (n, t))
    sc = jnp.asarray(scales, dtype=v.dtype)
    sc.shape[0]

    sig_mu = numpyro.sample("sig_mu", dist.Normal(math.log(0.2), 1.0))
    sig_slope = numpyro.sample("sig_slope", dist.Normal(0.0, 0.5))
    sig_tau = numpyro.sample("sig_tau", dist.HalfNormal(0.5))
    v_scale = numpyro.sample("v_scale", dist.LogNormal(0.0, V_SCALE_SD))
    conc = jnp.where(sc <= 0.0, null_weight, 1.0).astype(v.dtype)
    w = numpyro.sample("mix_weights", dist.Dirichlet(conc))
    with numpyro.plate("features", t):
        raw = numpyro.sample("sig_raw", dist.Normal(0.0, 1.0))
        sigma = numpyro.deterministic("sigma", jnp.exp(sig_mu + sig_slope * jnp.asarray(z) + sig_tau * raw))
        y = (jnp.asarray(m) - offset).T
        numpyro.sample("m", CollapsedFeatureLikelihood(v_scale * v.T, x, jnp.asarray(m0), sigma, jnp.log(w), sc), obs=y)
