"""Discrete hidden Markov models in pure JAX (jax and numpy only).

* :mod:`.inference`: the sequential algorithms (forward filter with emitted per-step normalisers,
  log-likelihood with a forward-backward custom VJP, smoother, two-slice marginals, Viterbi, sampling,
  ragged batches, the fast batched categorical kernels).
* :mod:`.parallel`: the same quantities by associative scans (``parallel_filter``,
  ``parallel_log_likelihood``, ``parallel_log_likelihood_batch``, ``parallel_smoother``), for accelerators;
  ``resolve_method`` is the ``method="auto"`` rule (parallel on an accelerator from ``PARALLEL_MIN_STEPS``
  steps, sequential on a CPU) that the log-likelihood functions apply.
* :mod:`.emissions`: emission families as objects with one protocol (log-likelihood matrix, numpy-side
  checks, M-step, sampling, site names): :class:`Categorical`, :class:`Poisson`,
  :class:`NegativeBinomial`, :class:`Gaussian` (diagonal or full covariance), :class:`Bernoulli`,
  :class:`Multinomial`; :func:`get_emission` by name.

Everything the former single module ``cores/hmm.py`` exported is re-exported here, so
``from diffbio_prob.cores import hmm`` and ``from diffbio_prob.cores.hmm import ...`` keep working.

Example:
    >>> import jax.numpy as jnp
    >>> from diffbio_prob.cores import hmm
    >>> params = hmm.HMMParams(jnp.log(jnp.array([0.6, 0.4])),
    ...                        jnp.log(jnp.array([[0.7, 0.3], [0.4, 0.6]])))
    >>> log_b = jnp.log(jnp.array([[0.1, 0.4, 0.5], [0.6, 0.3, 0.1]]))
    >>> ll = hmm.categorical_log_likelihoods(log_b, jnp.array([0, 1, 2]))
    >>> round(float(hmm.log_likelihood(params, ll)), 5)
    -3.39287
"""

from diffbio_prob.cores.hmm._base import FilterResult, HMMParams, Posterior, lengths_to_mask
from diffbio_prob.cores.hmm.emissions import (
    EMISSIONS,
    Bernoulli,
    Categorical,
    Emission,
    Gaussian,
    Multinomial,
    NegativeBinomial,
    Poisson,
    categorical_log_likelihoods,
    gaussian_log_likelihoods,
    get_emission,
    poisson_log_likelihoods,
)
from diffbio_prob.cores.hmm.inference import (
    backward_pass,
    categorical_log_likelihood_batch,
    categorical_posteriors_batch,
    categorical_viterbi_batch,
    forward_filter,
    log_likelihood,
    log_likelihood_batch,
    posterior_sample,
    sample_categorical,
    sample_states,
    smoother,
    smoother_batch,
    state_posteriors,
    two_slice_marginals,
    viterbi,
    viterbi_batch,
)
from diffbio_prob.cores.hmm.parallel import (
    METHODS,
    PARALLEL_MIN_STEPS,
    parallel_filter,
    parallel_log_likelihood,
    parallel_log_likelihood_batch,
    parallel_smoother,
    resolve_method,
)

__all__ = [
    "HMMParams",
    "FilterResult",
    "Posterior",
    "categorical_log_likelihoods",
    "poisson_log_likelihoods",
    "gaussian_log_likelihoods",
    "forward_filter",
    "log_likelihood",
    "log_likelihood_batch",
    "categorical_log_likelihood_batch",
    "categorical_posteriors_batch",
    "categorical_viterbi_batch",
    "backward_pass",
    "smoother",
    "smoother_batch",
    "state_posteriors",
    "two_slice_marginals",
    "viterbi",
    "viterbi_batch",
    "sample_states",
    "sample_categorical",
    "posterior_sample",
    "parallel_filter",
    "parallel_log_likelihood",
    "parallel_smoother",
    "parallel_log_likelihood_batch",
    "resolve_method",
    "METHODS",
    "PARALLEL_MIN_STEPS",
    "lengths_to_mask",
    "Emission",
    "Categorical",
    "Poisson",
    "NegativeBinomial",
    "Gaussian",
    "Bernoulli",
    "Multinomial",
    "EMISSIONS",
    "get_emission",
]
