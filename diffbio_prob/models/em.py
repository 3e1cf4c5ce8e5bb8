"""The EM quantifier's NumPyro twin: a Dirichlet prior on read fractions and the equivalence-class mixture
likelihood of :mod:`diffbio_prob.cores.em` (the operator's likelihood, same function).

Example:
    >>> import jax.numpy as jnp
    >>> from diffbio_prob.cores import em as core
    >>> from diffbio_prob.inference import fit_nuts
    >>> eqc = core.make_eq_classes([0, 1, 1, 2], [0, 0, 1, 1], counts=[10, 20, 30], n_transcripts=2)
    >>> fit = fit_nuts(em_model, eqc, jnp.array([100.0, 100.0]), num_warmup=200, num_samples=200,
    ...                num_chains=1, progress=False)                                    # doctest: +SKIP
    >>> fit.summary(["estimated_counts"])                                                 # doctest: +SKIP
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from diffbio_prob.cores import em as core

__all__ = ["DIMS", "em_model"]

#: Dimension names of :func:`em_model`'s sites and arguments (``FitResult.to_arviz``).
DIMS = {
    "abundances": ["transcript"],
    "estimated_counts": ["transcript"],
    "tpm": ["transcript"],
    "class_counts": ["eq_class"],
    "effective_lengths": ["transcript"],
    "concentration": ["transcript"],
}


def em_model(eq_classes: core.EquivalenceClasses, effective_lengths, concentration=1.0) -> None:
    """Bayesian transcript quantification over equivalence classes.

    ``alpha ~ Dirichlet(concentration)`` (read fractions); each class contributes
    ``n_c log sum_{t in c} alpha_t w_ct / l_t`` (:func:`diffbio_prob.cores.em.class_log_likelihood`, the
    multinomial likelihood of the class counts up to a constant). The posterior mode under a flat
    prior (``concentration=1``) is the EM maximum.

    Sites:
        ``abundances``: latent ``(T,)`` read fractions.
        ``class_counts``: ``numpyro.factor`` with the ``(C,)`` pointwise log-likelihood (LOO over classes).
        ``estimated_counts``: deterministic ``(T,)`` ``alpha * N`` (salmon's NumReads).
        ``tpm``: deterministic ``(T,)`` transcripts per million.

    Args:
        eq_classes: :class:`diffbio_prob.cores.em.EquivalenceClasses` (weights, counts).
        effective_lengths: ``Float[Array, "T"]``.
        concentration: Dirichlet concentration, a scalar or ``(T,)``; 1.0 (flat) by default. salmon's
            Gibbs sampler uses ``max(prior, 1)`` for the same reason: concentrations far below 1 put
            the mass on the simplex's boundary, where NUTS cannot move.
    """
    if not isinstance(eq_classes, core.EquivalenceClasses):
        raise TypeError(f"eq_classes: expected a cores.em.EquivalenceClasses, got {type(eq_classes).__name__}")
    core.validate(eq_classes, effective_lengths)
    T = eq_classes.n_transcripts
    dtype = eq_classes.counts.dtype
    if not isinstance(concentration, jax.core.Tracer):
        c = None if isinstance(concentration, (str, bytes)) else np.asarray(concentration)
        if c is None or not (np.issubdtype(c.dtype, np.number) and c.dtype != bool):
            raise TypeError(f"concentration: expected a positive number or ({T},) numbers, got {concentration!r}")
        if c.shape not in ((), (T,)) or not np.all(np.isfinite(c)) or np.any(c <= 0):
            raise ValueError(f"concentration: expected a positive scalar or shape ({T},), got {concentration!r}")
    conc = jnp.broadcast_to(jnp.asarray(concentration, dtype), (T,))
    lengths = jnp.asarray(effective_lengths, dtype)
    alpha = numpyro.sample("abundances", dist.Dirichlet(conc))
    numpyro.factor("class_counts", core.class_log_likelihood(eq_classes, lengths, alpha))
    out = core.quant_outputs(alpha * jnp.sum(eq_classes.counts), lengths)
    numpyro.deterministic("estimated_counts", out.estimated_counts)
    numpyro.deterministic("tpm", out.tpm)
