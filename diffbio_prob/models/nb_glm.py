"""The NB-GLM's NumPyro twin: a count distribution on the shared core and ``nb_glm_model``.

``NBCounts.log_prob`` *is* :func:`diffbio_prob.cores.nb.nb_log_pmf` and ``nb_glm_model`` builds its
mean with :func:`diffbio_prob.cores.nb.nb_glm_mean`, the functions the NNX operator
:class:`~diffbio_prob.operators.statistical.nb_glm.DifferentiableNBGLM` calls, so for equal
parameters the model's recorded log-likelihood equals the operator's.

The model is DESeq2's with its priors made explicit (Love et al. 2014): coefficients with a normal
(ridge; DESeq2's ``betaPrior``) or Cauchy (heavy-tailed, apeglm-like; Zhu et al. 2019) prior, and a
log-normal prior on each gene's dispersion centred on a fitted mean-dispersion trend with DESeq2's
prior width (``dispPriorVar``). Its posterior gives what ``lfcShrink`` gives, plus the uncertainty:
draws of every log fold change.

Sites (shapes with ``N`` samples, ``G`` genes, ``C`` design columns):

- ``beta`` ``(C, G)``: natural-log coefficients (latent);
- ``alpha`` ``(G,)``: DESeq2 dispersions, ``Var = mu + alpha mu^2`` (latent);
- ``counts`` ``(N, G)``: the observed counts; its pointwise log-likelihood is what ArviZ LOO uses.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from numpyro.infer import Predictive
    >>> x = jnp.column_stack([jnp.ones(4), jnp.array([0.0, 0.0, 1.0, 1.0])])
    >>> draws = Predictive(nb_glm_model, num_samples=2)(jax.random.key(0), None, x, jnp.ones(4), n_genes=3)
    >>> draws["counts"].shape, draws["beta"].shape
    ((2, 4, 3), (2, 2, 3))
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.util import validate_sample

from diffbio_prob.cores import nb as core

__all__ = ["DIMS", "NBCounts", "nb_glm_model"]

LN2 = math.log(2.0)

#: Dimension names of :func:`nb_glm_model`'s sites and arguments (``FitResult.to_arviz``). Not "sample":
#: ArviZ reserves it for stacked draws.
DIMS = {
    "beta": ["coefficient", "gene"],
    "alpha": ["gene"],
    "counts": ["sample_name", "gene"],
    "design": ["sample_name", "coefficient"],
    "size_factors": ["sample_name"],
    "dispersion_trend": ["gene"],
    "prior_scale": ["coefficient"],
}


class NBCounts(dist.Distribution):
    """Negative binomial with mean ``mean`` and size ``size`` (``Var = mean + mean^2 / size``).

    The same law as NumPyro's ``NegativeBinomial2(mean, concentration=size)``; its ``log_prob`` is the
    package's core :func:`~diffbio_prob.cores.nb.nb_log_pmf` (stable for sizes up to 1e8).

    Example:
        >>> import jax.numpy as jnp
        >>> round(float(NBCounts(jnp.array(1.0), jnp.array(1.0)).log_prob(jnp.array(0.0))), 6)
        -0.693147
    """

    arg_constraints = {"mu": constraints.nonnegative, "size": constraints.positive}
    support = constraints.nonnegative_integer
    pytree_data_fields = ("mu", "size")

    def __init__(self, mean, size, *, validate_args=None):
        batch_shape = jax.lax.broadcast_shapes(jnp.shape(mean), jnp.shape(size))
        self.mu = jnp.broadcast_to(mean, batch_shape)
        self.size = jnp.broadcast_to(size, batch_shape)
        super().__init__(batch_shape=batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        k1, k2 = jax.random.split(key)
        shape = sample_shape + self.batch_shape
        rate = jax.random.gamma(k1, self.size, shape) / self.size * self.mu
        return jax.random.poisson(k2, rate, shape).astype(jnp.result_type(float))

    @validate_sample
    def log_prob(self, value):
        return core.nb_log_pmf(value, self.mu, self.size)

    @property
    def mean(self):
        return self.mu

    @property
    def variance(self):
        return self.mu + self.mu**2 / self.size


def _coef_scales(design, prior_scale, intercept_scale):
    # Per-column prior sd on the natural-log scale; an all-ones column is the intercept. Decided with
    # jnp so a traced design (inside SVI/NUTS, where the model is re-run under jit) gets the same
    # widths as the concrete one NumPyro uses to find the initial point.
    c = design.shape[-1]
    scales = jnp.broadcast_to(jnp.asarray(prior_scale, dtype=design.dtype), (c,))
    intercept = jnp.all(design == 1.0, axis=0)
    return jnp.where(intercept, jnp.asarray(intercept_scale, dtype=design.dtype), scales) * LN2


def _check_model_args(counts, design, size_factors, n_genes, prior, prior_scale, intercept_scale, dispersion_trend,
                      dispersion_prior_sd) -> None:
    """The checks of :func:`nb_glm_model`'s arguments (shapes always; values when concrete)."""
    if prior not in ("normal", "cauchy"):
        raise ValueError(f"prior: expected 'normal' or 'cauchy', got {prior!r}")
    if counts is None:
        if n_genes is None:
            raise ValueError("n_genes: required when counts is None")
        if isinstance(n_genes, (bool, np.bool_)) or not isinstance(n_genes, (int, np.integer)) or n_genes < 1:
            raise ValueError(f"n_genes: expected a positive integer, got {n_genes!r}")
    d_shape = np.shape(design)
    if len(d_shape) != 2 or 0 in d_shape:
        raise ValueError(f"design: expected a non-empty (N, C) model matrix, got shape {d_shape}")
    n, c = d_shape
    if counts is not None:
        c_shape = np.shape(counts)
        if len(c_shape) != 2 or c_shape[0] != n or c_shape[1] == 0:
            raise ValueError(f"counts: expected shape (N, G) with N={n} samples (the design's rows), got {c_shape}")
        if n_genes is not None and int(n_genes) != c_shape[1]:
            raise ValueError(f"n_genes: {n_genes} does not match counts' {c_shape[1]} genes")
        core.check_counts(counts, "counts")
    g = int(n_genes) if counts is None else int(np.shape(counts)[1])
    if np.shape(size_factors) != (n,):
        raise ValueError(f"size_factors: expected shape ({n},) (one per sample), got {np.shape(size_factors)}")
    core.check_finite(design, "design")
    core.check_positive(size_factors, "size_factors")
    for name, value, shapes in (("prior_scale", prior_scale, ((), (c,))), ("intercept_scale", intercept_scale, ((),)),
                                ("dispersion_trend", dispersion_trend, ((), (g,))),
                                ("dispersion_prior_sd", dispersion_prior_sd, ((),))):
        if value is None:
            continue
        if np.shape(value) not in shapes:
            raise ValueError(f"{name}: expected a scalar" + (f" or shape {shapes[1]}" if len(shapes) > 1 else "")
                             + f", got shape {np.shape(value)}")
        core.check_positive(value, name)


def nb_glm_model(
    counts,
    design,
    size_factors,
    *,
    n_genes: int | None = None,
    prior: str = "normal",
    prior_scale=1.0,
    intercept_scale: float = 10.0,
    dispersion_trend=None,
    dispersion_prior_sd: float = 1.0,
):
    """NB GLM over genes with priors on coefficients and dispersions; records ``counts``.

    ``counts[n, g] ~ NB(mean = s_n exp(x_n' beta[:, g]), Var = mean + alpha_g mean^2)``,
    ``beta[k, g] ~ Normal(0, prior_scale_k ln 2)`` or ``Cauchy(0, prior_scale_k ln 2)``,
    ``log alpha_g ~ Normal(log trend_g, dispersion_prior_sd)``.

    Args:
        counts: ``(N, G)`` observed counts, or ``None`` to sample from the prior (give ``n_genes``).
        design: ``(N, C)`` model matrix.
        size_factors: ``(N,)`` positive size factors.
        n_genes: number of genes when ``counts`` is ``None``.
        prior: ``"normal"`` or ``"cauchy"`` on the coefficients.
        prior_scale: prior scale of each coefficient on the **log2** scale (DESeq2's LFC scale),
            scalar or ``(C,)``; an all-ones design column (the intercept) gets ``intercept_scale``.
        intercept_scale: log2-scale prior scale of the intercept.
        dispersion_trend: ``(G,)`` prior median of ``alpha`` (DESeq2's ``dispFit``); default 0.1.
        dispersion_prior_sd: sd of ``log alpha`` around the trend (DESeq2: ``sqrt(dispPriorVar)``).

    Raises:
        ValueError / TypeError, naming the argument, before anything is traced (concrete values only, so
        the model still runs under NUTS/SVI's jit): unknown ``prior``; neither ``counts`` nor
        ``n_genes``; counts that are negative, non-integer, NaN or infinite (NumPyro alone gave a
        log-density of -inf with a warning); size factors that are not finite and positive (NumPyro:
        "invalid mu parameter", or -inf for 0); shapes that do not fit together; prior scales, trend
        or prior sd that are not finite and positive.
    """
    _check_model_args(counts, design, size_factors, n_genes, prior, prior_scale, intercept_scale, dispersion_trend,
                      dispersion_prior_sd)
    design = jnp.asarray(design)
    n, c = design.shape
    g = int(n_genes) if counts is None else int(jnp.shape(counts)[-1])
    scales = _coef_scales(design, prior_scale, intercept_scale)
    trend = jnp.full((g,), 0.1) if dispersion_trend is None else jnp.broadcast_to(jnp.asarray(dispersion_trend), (g,))
    with numpyro.plate("genes", g, dim=-1):
        with numpyro.plate("coefficients", c, dim=-2):
            base = dist.Normal(0.0, scales[:, None]) if prior == "normal" else dist.Cauchy(0.0, scales[:, None])
            beta = numpyro.sample("beta", base)
        alpha = numpyro.sample("alpha", dist.LogNormal(jnp.log(trend), dispersion_prior_sd))
    mean = core.nb_glm_mean(design, jnp.log(jnp.asarray(size_factors)), beta)
    with numpyro.plate("samples", n, dim=-2), numpyro.plate("genes", g, dim=-1):
        numpyro.sample("counts", NBCounts(mean, 1.0 / alpha), obs=counts)
