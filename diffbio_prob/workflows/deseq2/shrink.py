"""R DESeq2's ``lfcShrink``: shrunken log2 fold changes for one coefficient of a fitted model.

Two of R's three estimators (``ashr`` is a separate package and is not reproduced):

``type="normal"`` (Love, Huber & Anders 2014)
    ``estimateBetaPriorVar`` on the MLE coefficients (the weighted 95% quantile of ``|beta|``, with weights
    ``1 / (1 / baseMean + dispFit)``, matched to a zero-mean normal; ``1e6`` for the intercept), then
    ``nbinomWaldTest(betaPrior=TRUE)``: the NB GLM refitted with the ridge ``lambda = 1 / priorVar`` (on the
    log2 scale) and the sandwich covariance. With ``coef`` R uses the standard model matrix (the expanded
    one only for ``contrast=``, which is not offered here). The table is R's ``results(dds, name=coef)``
    with ``log2FoldChange`` and ``lfcSE`` replaced: ``stat``, ``pvalue`` and ``padj`` stay the MLE test's.

``type="apeglm"`` (Zhu, Ibrahim & Love 2018; ``apeglm::apeglm(method="nbinomCR")`` as DESeq2 calls it)
    A Cauchy prior with scale ``S`` on ``coef`` and N(0, 15^2) on every other coefficient. With
    ``ape_adapt=True`` (R's default) ``S = min(sqrt(A), 1)``, ``A`` the Efron-Morris estimate of the
    variance of the true effects from the MLEs and their SEs (``apeglm:::priorVar``: R's ``uniroot``,
    reproduced step for step, on ``[1e-6, 400]``). With ``ape_adapt=False`` the prior is apeglm's default:
    scale 1 on every non-intercept coefficient. The MAP is R's: apeglm's C++ L-BFGS (RcppNumerical 0.4-0's
    ``optim_lbfgs``, LBFGS++ with the Wolfe backtracking line search) replayed for every gene in lock step
    (:func:`apeglm_cpp_map`), from apeglm's two starts; where they disagree by more than 0.01, or the
    Laplace variance is not positive, R's ``optim(method="BFGS")`` from the first start, replayed
    (:func:`r_vmmin`). ``rcppnumerical="0.7-0"`` replays today's RcppNumerical instead (LBFGS++ 0.4.0 with its
    Nocedal-Wright line search, gene by gene): R's answers depend on which one apeglm was built against. R stops these optimisers at a relative tolerance of 1e-8 on a scaled objective, so its
    MAP (and this one) can sit a little off the exact optimum, which :func:`apeglm_map` (damped Newton) finds.
    The posterior SD is the Laplace approximation with the Hessian taken as R's ``optimHess`` takes it
    (central differences of the analytic gradient, step 1e-3). The local false sign rate is
    ``pnorm(-|MAP|, 0, SD)`` and the s-values its running means. The table is ``baseMean, log2FoldChange,
    lfcSE, pvalue, padj`` (the MLE test's p-values), or ``baseMean, log2FoldChange, lfcSE, svalue`` with
    ``svalue=True``.

Not offered: ``contrast=`` (R's expanded model matrix for ``normal``), ``type="ashr"``.

Example:
    >>> res = lfc_shrink(fit, "condition_B_vs_A", type="apeglm")  # doctest: +SKIP
    >>> res.attrs["prior"]["prior_control"]["prior_scale"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
import pandas as pd
from scipy import special

from diffbio_prob.workflows.deseq2.data import DESeq2Data
from diffbio_prob.workflows.deseq2.glm import LN2, LOG2E, fit_glm

__all__ = [
    "ape_prior_variance",
    "apeglm_log_posterior_grad",
    "apeglm_map",
    "beta_prior_variance",
    "lfc_shrink",
    "r_uniroot",
    "svalue",
]

TYPES = ("apeglm", "normal")
_NO_SHRINK_SCALE = 15.0  # apeglm's prior.no.shrink.scale
_EPS = np.finfo(float).eps


# ------------------------------------------------------------------------------------------------
# Argument checks.
# ------------------------------------------------------------------------------------------------


def _coef_index(fit, coef) -> int:
    names = list(fit.design.names)
    if isinstance(coef, (bool, np.bool_)) or coef is None:
        raise ValueError(f"coef: expected a coefficient name (one of {names}) or a 0-based index, got {coef!r}")
    if isinstance(coef, str):
        if coef not in names:
            raise ValueError(f"coef: {coef!r} is not a coefficient of the fit; coefficients are {names}")
        return names.index(coef)
    if isinstance(coef, (int, np.integer)):
        if not 0 <= int(coef) < len(names):
            raise ValueError(f"coef: index {int(coef)} is out of range for the {len(names)} coefficients {names} (0-based)")
        return int(coef)
    raise ValueError(f"coef: expected a coefficient name (one of {names}) or a 0-based index, got {type(coef).__name__}")


def _data(fit, counts: np.ndarray, rows=None) -> DESeq2Data:
    if fit.normalization_factors is not None:
        nf = np.asarray(fit.normalization_factors, dtype=float)
        return DESeq2Data(counts, fit.design.matrix, normalization_factors=nf if rows is None else nf[rows])
    return DESeq2Data(counts, fit.design.matrix, size_factors=np.asarray(fit.size_factors, dtype=float))


def _log_offset(fit) -> np.ndarray:
    if fit.normalization_factors is not None:
        return np.log(np.asarray(fit.normalization_factors, dtype=float))
    return np.broadcast_to(np.log(np.asarray(fit.size_factors, dtype=float)), fit.counts.shape)


# ------------------------------------------------------------------------------------------------
# type = "normal": estimateBetaPriorVar + nbinomWaldTest(betaPrior = TRUE).
# ------------------------------------------------------------------------------------------------


def _r_wtd_quantile(x: np.ndarray, weights: np.ndarray, prob: float) -> float:
    # DESeq2's copy of Hmisc::wtd.quantile(x, weights, prob, normwt = TRUE), type "quantile".
    x = np.asarray(x, dtype=float)
    w = np.asarray(weights, dtype=float)
    keep = ~(np.isnan(w) | (w == 0))
    x, w = x[keep], w[keep]
    keep = ~np.isnan(x + w)
    x, w = x[keep], w[keep]
    w = w * x.size / w.sum()
    order = np.argsort(x, kind="stable")
    x, w = x[order], w[order]
    if x.size > 1 and np.any(x[1:] == x[:-1]):
        # tapply(weights, x, sum) keyed by as.character(x): the x values come back through 15 significant digits
        ux, inv = np.unique(x, return_inverse=True)
        w = np.bincount(inv, weights=w)
        x = np.array([float(f"{v:.15g}") for v in ux])
    n = w.sum()
    order_ = 1 + (n - 1) * prob
    low = max(math.floor(order_), 1)
    high = min(low + 1, n)
    frac = order_ % 1
    cw = np.cumsum(w)

    def approx_constant_right(xout):
        # approx(cumsum(wts), x, xout, method = "constant", f = 1, rule = 2)
        if xout <= cw[0]:
            return x[0]
        if xout >= cw[-1]:
            return x[-1]
        i = int(np.searchsorted(cw, xout, side="left"))
        return x[i]

    return float((1 - frac) * approx_constant_right(low) + frac * approx_constant_right(high))


def beta_prior_variance(fit, *, upper_quantile: float = 0.05, method: str = "weighted") -> np.ndarray:
    """R's ``estimateBetaPriorVar`` for the standard model matrix: ``(P,)`` prior variances (log2 scale).

    The MLE coefficients (log2) of the genes that are not all zero, those with ``|beta| < 10`` per column;
    ``method="weighted"`` matches the weighted ``1 - upper_quantile`` quantile of ``|beta|`` (weights
    ``1 / (1 / baseMean + dispFit)``) to a normal's, ``"quantile"`` the plain one. The intercept gets ``1e6``.
    """
    if method not in ("weighted", "quantile"):
        raise ValueError(f"method: expected 'weighted' or 'quantile', got {method!r}")
    nz = ~np.asarray(fit.gene["allZero"], bool)
    beta = np.asarray(fit.beta, dtype=float)[nz] * LOG2E
    disp_fit = np.asarray(fit.gene["dispFit"], dtype=float)[nz]
    base_mean = np.asarray(fit.gene["baseMean"], dtype=float)[nz]
    weights = 1.0 / (1.0 / base_mean + disp_fit)
    qn = special.ndtri(1 - upper_quantile / 2)
    out = np.empty(beta.shape[1])
    for k in range(beta.shape[1]):
        x = beta[:, k]
        if beta.shape[0] <= 1:
            out[k] = x[0] ** 2 if x.size else np.nan
            continue
        fin = np.abs(x) < 10
        if not fin.any():
            out[k] = 1e6
        elif method == "weighted":
            out[k] = (_r_wtd_quantile(np.abs(x[fin]), weights[fin], 1 - upper_quantile) / qn) ** 2
        else:
            out[k] = (np.quantile(np.abs(x[fin]), 1 - upper_quantile) / qn) ** 2
    for k, name in enumerate(fit.design.names):
        if name in ("Intercept", "(Intercept)"):
            out[k] = 1e6
    return out


def _normal(fit, k: int, res: pd.DataFrame, shard: bool) -> tuple[np.ndarray, np.ndarray, dict]:
    raw = fit.design.raw_names
    if any(":" in r for r in raw):
        raise ValueError(
            "type: LFC shrinkage type='normal' is not implemented for designs with interactions "
            f"({fit.design.formula!r}), as in R; use type='apeglm'"
        )
    prior_var = beta_prior_variance(fit)
    if np.any(prior_var == 0):
        raise ValueError("beta prior variances are equal to zero for some variables (as R refuses)")
    nz = ~np.asarray(fit.gene["allZero"], bool)
    data = _data(fit, np.asarray(fit.counts, dtype=float)[nz], rows=nz)
    with jax.enable_x64(True):  # the fitter runs in float64 only inside this context (as fit_deseq2 runs it)
        glm = fit_glm(data, np.asarray(fit.gene["dispersion"], dtype=float)[nz], fit.options,
                      ridge_log2=1.0 / prior_var, shard=shard)
    g = fit.counts.shape[0]
    lfc = np.full(g, np.nan)
    se = np.full(g, np.nan)
    lfc[nz] = glm.beta[:, k] * LOG2E
    se[nz] = np.sqrt(np.maximum(glm.sigma[:, k, k], 0.0)) * LOG2E
    info = {"type": "normal", "package": "DESeq2",
            "betaPriorVar": dict(zip(fit.design.names, map(float, prior_var)))}
    beta = np.full_like(np.asarray(fit.beta, dtype=float), np.nan)
    sigma = np.full_like(np.asarray(fit.sigma, dtype=float), np.nan)
    beta[nz], sigma[nz] = glm.beta, glm.sigma
    return lfc, se, info, (beta, sigma)


# ------------------------------------------------------------------------------------------------
# type = "apeglm".
# ------------------------------------------------------------------------------------------------


def r_uniroot(f, lower: float, upper: float, *, tol: float = _EPS**0.25, maxiter: int = 1000) -> float:
    """R's ``uniroot`` (``R_zeroin2``, Brent's method as R codes it), step for step, R's default tolerance."""
    a, b = float(lower), float(upper)
    fa, fb = float(f(a)), float(f(b))
    if fa == 0.0:
        return a
    if fb == 0.0:
        return b
    if fa * fb > 0:
        raise ValueError("f() values at end points not of opposite sign")
    c, fc = a, fa
    for _ in range(maxiter + 1):
        prev_step = b - a
        if abs(fc) < abs(fb):
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tol_act = 2 * _EPS * abs(b) + tol / 2
        new_step = (c - b) / 2
        if abs(new_step) <= tol_act or fb == 0.0:
            return b
        if abs(prev_step) >= tol_act and abs(fa) > abs(fb):
            cb = c - b
            if a == c:
                t1 = fb / fa
                p = cb * t1
                q = 1.0 - t1
            else:
                q = fa / fc
                t1 = fb / fc
                t2 = fb / fa
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0))
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0)
            if p > 0:
                q = -q
            else:
                p = -p
            if p < (0.75 * cb * q - abs(tol_act * q) / 2) and p < abs(prev_step * q / 2):
                new_step = p / q
        if abs(new_step) < tol_act:
            new_step = tol_act if new_step > 0 else -tol_act
        a, fa = b, fb
        b += new_step
        fb = float(f(b))
        if (fb > 0 and fc > 0) or (fb < 0 and fc < 0):
            c, fc = a, fa
    return b


def ape_prior_variance(mle: np.ndarray, se: np.ndarray, *, min_var: float = 0.001**2, max_var: float = 20.0**2) -> float:
    """``apeglm:::priorVar``: Efron & Morris's estimate of the variance of the true effects (natural log).

    Solves ``A = sum((X^2 - D) I(A)) / sum(I(A))``, ``I(A) = 1 / (2 (A + D)^2)``, ``D = SE^2``, over the
    non-missing MLEs ``X``, by R's ``uniroot`` on ``[min_var, max_var]``; ``min_var`` when the equation's
    left side is below ``A`` already at ``min_var``.
    """
    mle = np.asarray(mle, dtype=float)
    se = np.asarray(se, dtype=float)
    keep = ~np.isnan(mle)
    x = mle[keep]
    d = se[keep] ** 2
    s = x**2

    def objective(a):
        i = 1.0 / (2 * (a + d) ** 2)
        return float(np.sum((s - d) * i) / np.sum(i)) - a

    if objective(min_var) < 0:
        return float(min_var)
    return float(r_uniroot(objective, min_var, max_var))


def _nb_parts(beta, x, y, size, offset):
    # eta = x beta + offset, mu/(size+mu), and log(size + mu), stable for large eta
    xb = beta @ x.T  # (G, N)
    eta = xb + offset
    log_size = np.log(size)[:, None]
    log_b = np.logaddexp(log_size, eta)
    frac = np.exp(eta - log_b)  # mu / (size + mu)
    return xb, frac, log_b


def _neg_log_post(beta, x, y, size, offset, sigma2, s2, shrink_mask):
    xb, _, log_b = _nb_parts(beta, x, y, size, offset)
    a = y + size[:, None]
    lik = np.sum(y * xb - a * log_b, axis=1)
    prior = np.where(shrink_mask, np.log1p(beta**2 / s2), beta**2 / (2 * sigma2)).sum(axis=1)
    return -lik + prior


def apeglm_log_posterior_grad(beta, x, y, size, offset, sigma2, s2, shrink_mask) -> np.ndarray:
    """``(G, P)`` gradient of apeglm's negative log posterior (``nbinomGr``) at ``(G, P)`` coefficients."""
    _, frac, _ = _nb_parts(beta, x, y, size, offset)
    a = y + size[:, None]
    resid = y - a * frac
    g_prior = np.where(shrink_mask, 2 * beta / (s2 + beta**2), beta / sigma2)
    return -(resid @ x) + g_prior


def _hessian(beta, x, y, size, offset, sigma2, s2, shrink_mask):
    _, frac, _ = _nb_parts(beta, x, y, size, offset)
    a = y + size[:, None]
    w = a * frac * (1 - frac)  # (y + size) mu size / (size + mu)^2
    h = np.einsum("gn,np,nq->gpq", w, x, x)
    hp = np.where(shrink_mask, 2 * (s2 - beta**2) / (s2 + beta**2) ** 2, 1.0 / sigma2)
    idx = np.arange(beta.shape[1])
    h[:, idx, idx] += hp
    return h


def _laplace_var(hess):
    # diag(-solve(-H)) with NaN where H is singular
    out = np.full(hess.shape[:2], np.nan)
    ok = np.all(np.isfinite(hess), axis=(1, 2))
    if ok.any():
        with np.errstate(invalid="ignore", divide="ignore"):
            try:
                inv = np.linalg.inv(hess[ok])
                out[ok] = np.diagonal(inv, axis1=1, axis2=2)
            except np.linalg.LinAlgError:
                for i in np.flatnonzero(ok):
                    try:
                        out[i] = np.diag(np.linalg.inv(hess[i]))
                    except np.linalg.LinAlgError:
                        pass
    return out


def _r_optim_hess(beta, args, ndeps: float = 1e-3):
    # R's optimHess with a gradient: central differences of gr, step ndeps, then symmetrised.
    g, p = beta.shape
    h = np.empty((g, p, p))
    for i in range(p):
        e = np.zeros(p)
        e[i] = ndeps
        df1 = apeglm_log_posterior_grad(beta + e, *args)
        df2 = apeglm_log_posterior_grad(beta - e, *args)
        h[:, i, :] = (df1 - df2) / (2 * ndeps)
    return 0.5 * (h + np.transpose(h, (0, 2, 1)))


def apeglm_map(y, x, size, offset, sigma2, s2, shrink_mask, init, *, max_iter: int = 100):
    """MAP of apeglm's NB posterior per gene by damped Newton (backtracking on the log posterior).

    Args:
        y: ``(G, N)`` counts; x: ``(N, P)`` design; size: ``(G,)`` ``1 / dispersion``; offset: ``(G, N)``.
        sigma2: the variance of the normal prior on the coefficients not shrunk; s2: the squared
            Cauchy scale; shrink_mask: ``(P,)`` True for the Cauchy-prior coefficients.
        init: ``(P,)`` or ``(G, P)`` start.

    Returns:
        ``(beta (G, P), converged (G,) bool)``; converged means the last Newton step was below ``1e-13``
        relative to the coefficients (quadratic convergence: the gradient is then at rounding level), no
        step could lower the objective, or the gradient is below ``1e-12`` times the total count.
    """
    g, p = y.shape[0], x.shape[1]
    beta = np.array(np.broadcast_to(init, (g, p)), dtype=float)
    args = (x, y, size, offset, sigma2, s2, shrink_mask)
    f = _neg_log_post(beta, *args)
    conv = np.zeros(g, bool)
    eye = np.eye(p)
    for _ in range(max_iter):
        act = np.flatnonzero(~conv)
        if act.size == 0:
            break
        sub = (x, y[act], size[act], offset[act], sigma2, s2, shrink_mask)
        b = beta[act]
        grad = apeglm_log_posterior_grad(b, *sub)
        hess = _hessian(b, *sub)
        # make the Newton matrix positive definite where the Cauchy prior bends it the wrong way
        lam_min = np.linalg.eigvalsh(hess)[:, 0]
        shift = np.where(lam_min > 1e-8 * np.abs(hess).max(axis=(1, 2)), 0.0, 1e-6 - lam_min + 1e-3 * np.abs(lam_min))
        step = -np.linalg.solve(hess + shift[:, None, None] * eye, grad[..., None])[..., 0]
        small = np.max(np.abs(step), axis=1) <= 1e-13 * (1.0 + np.max(np.abs(b), axis=1))
        done = small & (shift == 0)
        beta[act[done]] = b[done] + step[done]
        conv[act[done]] = True
        todo = ~done
        if not todo.any():
            break
        act, b, step, grad = act[todo], b[todo], step[todo], grad[todo]
        sub = (x, y[act], size[act], offset[act], sigma2, s2, shrink_mask)
        t = np.ones(act.size)
        f0 = f[act]
        slope = np.einsum("gp,gp->g", grad, step)
        new_b = b.copy()
        new_f = f0.copy()
        pending = np.ones(act.size, bool)
        for _ in range(60):
            cand = b[pending] + t[pending, None] * step[pending]
            subp = (x, y[act[pending]], size[act[pending]], offset[act[pending]], sigma2, s2, shrink_mask)
            fc = _neg_log_post(cand, *subp)
            # Armijo, or (near the optimum, where f only moves in its last bits) no increase beyond rounding
            ok = np.isfinite(fc) & ((fc <= f0[pending] + 1e-4 * t[pending] * slope[pending])
                                    | (fc <= f0[pending] + 64 * _EPS * np.abs(f0[pending])))
            idx = np.flatnonzero(pending)
            new_b[idx[ok]] = cand[ok]
            new_f[idx[ok]] = fc[ok]
            pending[idx[ok]] = False
            t[idx[~ok]] *= 0.5
            if not pending.any():
                break
        # no decrease possible (at the optimum to rounding): converged
        stuck = pending
        conv[act[stuck]] = True
        beta[act] = new_b
        f[act] = new_f
    rest = np.flatnonzero(~conv)
    if rest.size:
        # steps cycling in the last bits: converged if the gradient is at rounding level of the likelihood
        gr = apeglm_log_posterior_grad(beta[rest], x, y[rest], size[rest], offset[rest], sigma2, s2, shrink_mask)
        conv[rest] = np.max(np.abs(gr), axis=1) <= 1e-12 * (1.0 + y[rest].sum(axis=1))
    return beta, conv


# ------------------------------------------------------------------------------------------------
# apeglm's C++ MAP (nbinomGLM): RcppNumerical's optim_lbfgs, vectorised over genes.
# ------------------------------------------------------------------------------------------------


def _cpp_f_grad(beta, x, y, size, offset, sigma2, s2, shrink_mask, cnst):
    # apeglm nbinomGLM.cpp optimFun::f_grad: the negative log posterior / cnst + 10, and its gradient
    xbeta = beta @ x.T
    with np.errstate(over="ignore"):
        e = np.exp(xbeta + offset)
    a = y + size[:, None]
    b = e + size[:, None]
    c = y - a * e / b
    d = y * xbeta - a * np.log(b)
    b2 = beta * beta
    neg_prior = np.where(shrink_mask, np.log1p(b2 / s2), b2 / (2.0 * sigma2)).sum(axis=1)
    d_prior = np.where(shrink_mask, 2.0 * beta / (s2 + b2), beta / sigma2)
    f = -1.0 * d.sum(axis=1) / cnst + neg_prior / cnst + 10.0
    grad = (-1.0 * (c @ x)) / cnst[:, None] + d_prior / cnst[:, None]
    return f, grad


def apeglm_cpp_map(y, x, size, offset, sigma2, s2, shrink_mask, init, cnst, *, m: int = 6, epsilon: float = 1e-8,
                   delta: float = 1e-8, max_iterations: int = 300, max_linesearch: int = 100,
                   ftol: float = 1e-4, wolfe: float = 0.9, min_step: float = 1e-20, max_step: float = 1e20):
    """apeglm's C++ MAP: RcppNumerical 0.4-0's ``optim_lbfgs(f, beta, fopt, 300, 1e-8, 1e-8)`` (LBFGS++ with
    the Wolfe backtracking line search, ``m = 6``, ``past = 1``), one state machine per gene, run in lock step.

    R stops where LBFGS++ stops (a relative change below ``1e-8`` of the scaled objective, which is about 10),
    not at the optimum; this reproduces those iterates. Returns ``(beta (G, P), status (G,))``, status
    ``-1`` where LBFGS++ threw (line-search step out of range), else 0.
    """
    g, p = y.shape[0], x.shape[1]
    args = (x, y, size, offset, sigma2, s2, shrink_mask)
    xk = np.array(np.broadcast_to(init, (g, p)), dtype=float)
    fx, grad = _cpp_f_grad(xk, *args, cnst)
    status = np.zeros(g, int)
    done = np.linalg.norm(grad, axis=1) <= epsilon * np.maximum(np.linalg.norm(xk, axis=1), 1.0)
    drt = -grad
    step = 1.0 / np.linalg.norm(drt, axis=1)
    k = np.ones(g, int)
    end = np.zeros(g, int)
    fpast = fx.copy()
    s_hist = np.zeros((g, m, p))
    y_hist = np.zeros((g, m, p))
    ys_hist = np.ones((g, m))
    alpha = np.zeros((g, m))
    # line-search state
    xp, gradp = xk.copy(), grad.copy()
    fx_init = fx.copy()
    dg_init = np.einsum("gp,gp->g", grad, drt)
    ls_iter = np.zeros(g, int)
    while True:
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        sub = (x, y[act], size[act], offset[act], sigma2, s2, shrink_mask, cnst[act])
        xa = xp[act] + step[act, None] * drt[act]
        fa, ga = _cpp_f_grad(xa, *sub)
        xk[act], fx[act], grad[act] = xa, fa, ga
        armijo_fail = fa > fx_init[act] + step[act] * (ftol * dg_init[act])
        dg = np.einsum("gp,gp->g", ga, drt[act])
        width = np.where(armijo_fail, 0.5, np.where(dg < wolfe * dg_init[act], 2.1, 0.0))
        accept = width == 0.0
        ls_iter[act] += 1
        exhausted = ~accept & (ls_iter[act] >= max_linesearch)
        cont = act[~accept & ~exhausted]
        # LBFGS++ checks the step bounds before it changes the step
        throw = (step[cont] < min_step) | (step[cont] > max_step)
        status[cont[throw]] = -1
        done[cont[throw]] = True
        cont = cont[~throw]
        step[cont] *= width[np.searchsorted(act, cont)]
        fin = act[accept | exhausted]  # line search over: the L-BFGS iteration goes on from here
        if fin.size == 0:
            continue
        xn = np.linalg.norm(xk[fin], axis=1)
        gn = np.linalg.norm(grad[fin], axis=1)
        stop = gn <= epsilon * np.maximum(xn, 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            stop |= (k[fin] >= 1) & (np.abs((fpast[fin] - fx[fin]) / fx[fin]) < delta)
        fpast[fin] = fx[fin]
        stop |= (max_iterations != 0) & (k[fin] >= max_iterations)
        done[fin[stop]] = True
        fin = fin[~stop]
        if fin.size == 0:
            continue
        e_ = end[fin]
        s_new = xk[fin] - xp[fin]
        y_new = grad[fin] - gradp[fin]
        ys = np.einsum("gp,gp->g", y_new, s_new)
        yy = np.einsum("gp,gp->g", y_new, y_new)
        s_hist[fin, e_] = s_new
        y_hist[fin, e_] = y_new
        ys_hist[fin, e_] = ys
        d = -grad[fin]
        bound = np.minimum(m, k[fin])
        e_ = (e_ + 1) % m
        end[fin] = e_
        j = e_.copy()
        for i in range(m):
            on = i < bound
            j = np.where(on, (j + m - 1) % m, j)
            sj, yj = s_hist[fin, j], y_hist[fin, j]
            al = np.einsum("gp,gp->g", sj, d) / ys_hist[fin, j]
            al = np.where(on, al, 0.0)
            alpha[fin[on], j[on]] = al[on]
            d = d - np.where(on[:, None], al[:, None] * yj, 0.0)
        d = d * (ys / yy)[:, None]
        for i in range(m):
            on = i < bound
            sj, yj = s_hist[fin, j], y_hist[fin, j]
            be = np.einsum("gp,gp->g", yj, d) / ys_hist[fin, j]
            d = d + np.where(on[:, None], (alpha[fin, j] - be)[:, None] * sj, 0.0)
            j = np.where(on, (j + 1) % m, j)
        drt[fin] = d
        step[fin] = 1.0
        k[fin] += 1
        # the next line search starts here
        xp[fin], gradp[fin] = xk[fin], grad[fin]
        fx_init[fin] = fx[fin]
        dg_init[fin] = np.einsum("gp,gp->g", grad[fin], d)
        ls_iter[fin] = 0
    return xk, status



class _LineSearchFailed(Exception):
    pass


def _nw_quad_interp(step_lo, step_hi, fx_lo, fx_hi, dg_lo):
    fdiff = fx_hi - fx_lo
    sdiff = step_hi - step_lo
    smid = (step_hi + step_lo) / 2.0
    cand = fdiff * step_lo - smid * sdiff * dg_lo
    cand = cand / (fdiff - sdiff * dg_lo) if (fdiff - sdiff * dg_lo) != 0 else math.nan
    bad = not math.isfinite(cand)
    near_end = (not bad) and min(abs(cand - step_lo), abs(cand - step_hi)) < 0.01 * abs(sdiff)
    if bad or cand <= min(step_lo, step_hi) or cand >= max(step_lo, step_hi) or near_end:
        return smid
    return cand


def _nw_line_search(fg, xp, drt, step, fx, grad, dg, *, ftol, wolfe, max_linesearch):
    # LBFGS++ 0.4.0 LineSearchNocedalWright: returns (step, fx, grad, dg, x); raises _LineSearchFailed(x)
    fx_init, dg_init = fx, dg
    if dg_init > 0:
        raise _LineSearchFailed(xp)
    test_decr = ftol * dg_init
    test_curv = -wolfe * dg_init
    step_lo, fx_lo, dg_lo = 0.0, fx_init, dg_init
    x_lo, grad_lo = xp, grad
    it = 0
    while True:
        x = xp + step * drt
        fx, grad = fg(x)
        dg = float(grad @ drt)
        if fx - fx_init > step * test_decr or (0.0 < step_lo and fx >= fx_lo):
            step_hi, fx_hi = step, fx
            break
        if abs(dg) <= test_curv:
            return step, fx, grad, dg, x
        step_hi, fx_hi = step_lo, fx_lo
        step_lo, fx_lo, dg_lo, x_lo, grad_lo = step, fx, dg, x, grad
        if dg >= 0:
            break
        it += 1
        if it >= max_linesearch:
            return step, fx, grad_lo, dg, x_lo
        step *= 2.0
    while True:
        step = _nw_quad_interp(step_lo, step_hi, fx_lo, fx_hi, dg_lo)
        x = xp + step * drt
        fx, grad = fg(x)
        dg = float(grad @ drt)
        if fx - fx_init > step * test_decr or fx >= fx_lo:
            if step == step_hi:
                raise _LineSearchFailed(x)
            step_hi, fx_hi = step, fx
        else:
            if abs(dg) <= test_curv:
                return step, fx, grad, dg, x
            if dg * (step_hi - step_lo) >= 0:
                step_hi, fx_hi = step_lo, fx_lo
            if step == step_lo:
                raise _LineSearchFailed(x)
            step_lo, fx_lo, dg_lo, x_lo, grad_lo = step, fx, dg, x, grad
        it += 1
        if it >= max_linesearch:
            if step_lo <= 0:
                raise _LineSearchFailed(x)
            return step_lo, fx_lo, grad_lo, dg_lo, x_lo


def _lbfgs_07_one(fg, x0, *, m=6, epsilon=1e-8, delta=1e-8, max_iterations=300, max_linesearch=100,
                  ftol=1e-4, wolfe=0.9):
    # LBFGS++ 0.4.0 LBFGSSolver::minimize with its default LineSearchNocedalWright, for one gene
    x = np.array(x0, dtype=float)
    fx, grad = fg(x)
    gn = float(np.linalg.norm(grad))
    if gn <= epsilon or gn <= epsilon * float(np.linalg.norm(x)):
        return x, 0
    fpast = fx
    drt = -grad
    step = 1.0 / float(np.linalg.norm(drt))
    s_hist, y_hist, ys_hist = [None] * m, [None] * m, [0.0] * m
    alpha = [0.0] * m
    ncorr, ptr, theta = 0, m, 1.0
    k = 1
    while True:
        xp, gradp = x, grad
        dg = float(grad @ drt)
        try:
            step, fx, grad, dg, x = _nw_line_search(fg, xp, drt, step, fx, grad, dg, ftol=ftol, wolfe=wolfe,
                                                    max_linesearch=max_linesearch)
        except _LineSearchFailed as exc:
            return np.array(exc.args[0], dtype=float), -1
        gn = float(np.linalg.norm(grad))
        if gn <= epsilon or gn <= epsilon * float(np.linalg.norm(x)):
            return x, 0
        if abs(fpast - fx) <= delta * max(abs(fx), abs(fpast), 1.0):
            return x, 0
        fpast = fx
        if max_iterations != 0 and k >= max_iterations:
            return x, 0
        vs = x - xp
        vy = grad - gradp
        if float(vs @ vy) > _EPS * float(vy @ vy):
            loc = ptr % m
            s_hist[loc], y_hist[loc] = vs, vy
            ys = float(vs @ vy)
            ys_hist[loc] = ys
            theta = float(vy @ vy) / ys
            ncorr = min(ncorr + 1, m)
            ptr = loc + 1
        res = -1.0 * grad
        j = ptr % m
        for _ in range(ncorr):
            j = (j + m - 1) % m
            alpha[j] = float(s_hist[j] @ res) / ys_hist[j]
            res = res - alpha[j] * y_hist[j]
        res = res / theta
        for _ in range(ncorr):
            beta_ = float(y_hist[j] @ res) / ys_hist[j]
            res = res + (alpha[j] - beta_) * s_hist[j]
            j = (j + 1) % m
        drt = res
        step = 1.0
        k += 1


def _apeglm_cpp_map_07(y, x, size, offset, sigma2, s2, shrink_mask, init, cnst):
    # apeglm's C++ MAP on RcppNumerical 0.7-0 (LBFGS++ 0.4.0, Nocedal-Wright line search), gene by gene
    g, p = y.shape[0], x.shape[1]
    out = np.empty((g, p))
    status = np.zeros(g, int)
    start = np.broadcast_to(init, (g, p))
    for i in range(g):
        a = (x, y[i:i + 1], size[i:i + 1], offset[i:i + 1], sigma2, s2, shrink_mask, cnst[i:i + 1])

        def fg(b, a=a):
            f, gr = _cpp_f_grad(b[None], *a)
            return float(f[0]), gr[0]

        out[i], status[i] = _lbfgs_07_one(fg, start[i])
    return out, status


# ------------------------------------------------------------------------------------------------
# apeglm's R fallback (optimNbinom): optim(method = "BFGS"), R's vmmin, one gene at a time.
# ------------------------------------------------------------------------------------------------


def _r_sum(values) -> float:
    # R's sum(): a long double accumulator, added in order, rounded to double at the end
    acc = np.longdouble(0.0)
    for v in values:
        acc += np.longdouble(v)
    return float(acc)


def _r_xbeta(x, beta):
    # x %*% beta with the reference BLAS's order: ((0 + x[, 1] b1) + x[, 2] b2) + ...
    out = np.zeros(x.shape[0])
    for j in range(x.shape[1]):
        out = out + x[:, j] * beta[j]
    return out


def _r_nbinom_fn(beta, x, y, size, offset, sigma2, s2, shrink_mask, cnst):
    # apeglm:::nbinomFn (the negative log posterior plus a constant) for one gene, in R's operation order
    xbeta = _r_xbeta(x, beta)
    b2 = beta * beta
    prior = _r_sum(-b2[~shrink_mask] / (2.0 * sigma2)) + _r_sum(-np.log1p(b2[shrink_mask] / s2))
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing trial step is rejected, as in R
        terms = 1.0 * (y * xbeta - (y + size) * np.log(size + np.exp(xbeta + offset)))
    return (-_r_sum(terms) - prior) + cnst


def _r_nbinom_gr(beta, x, y, size, offset, sigma2, s2, shrink_mask):
    # apeglm:::nbinomGr for one gene: -t(x) %*% (...) - prior, the product summed over samples in order
    xbeta = _r_xbeta(x, beta)
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(xbeta + offset)
        v = 1.0 * (y - (y + size) * e / (size + e))
    prior = np.where(shrink_mask, -2.0 * beta / (s2 + beta * beta), -beta / sigma2)
    out = np.empty(beta.size)
    for i in range(beta.size):
        acc = 0.0
        for n in range(v.size):
            acc += float(x[n, i]) * float(v[n])
        out[i] = -acc - prior[i]
    return out


def r_vmmin(fn, gr, b0, *, maxit: int = 100, abstol: float = -math.inf, reltol: float = math.sqrt(_EPS)):
    """R's ``optim(method = "BFGS")`` (``vmmin`` in R's optim.c), step for step in double precision.

    Returns ``(par, value, fail)``.
    """
    stepredn, acctol, reltest = 0.2, 0.0001, 10.0
    b = [float(v) for v in b0]
    n = len(b)
    f = fn(np.array(b))
    if not math.isfinite(f):
        raise ValueError("initial value in 'vmmin' is not finite")
    fmin = f
    g = [float(v) for v in gr(np.array(b))]
    gradcount = 1
    it = 1
    ilast = gradcount
    bm = [[0.0] * (i + 1) for i in range(n)]  # lower triangle
    count = 0
    while True:
        if ilast == gradcount:
            for i in range(n):
                for j in range(i):
                    bm[i][j] = 0.0
                bm[i][i] = 1.0
        xv = list(b)
        c = list(g)
        t = [0.0] * n
        gradproj = 0.0
        for i in range(n):
            sacc = 0.0
            for j in range(i + 1):
                sacc -= bm[i][j] * g[j]
            for j in range(i + 1, n):
                sacc -= bm[j][i] * g[j]
            t[i] = sacc
            gradproj += sacc * g[i]
        if gradproj < 0.0:
            steplength = 1.0
            accpoint = False
            while True:
                count = 0
                for i in range(n):
                    b[i] = xv[i] + steplength * t[i]
                    if reltest + xv[i] == reltest + b[i]:
                        count += 1
                if count < n:
                    f = fn(np.array(b))
                    accpoint = math.isfinite(f) and (f <= fmin + gradproj * steplength * acctol)
                    if not accpoint:
                        steplength *= stepredn
                if count == n or accpoint:
                    break
            enough = (f > abstol) and abs(f - fmin) > reltol * (abs(fmin) + reltol)
            if not enough:
                count = n
                fmin = f
            if count < n:
                fmin = f
                g = [float(v) for v in gr(np.array(b))]
                gradcount += 1
                it += 1
                d1 = 0.0
                for i in range(n):
                    t[i] = steplength * t[i]
                    c[i] = g[i] - c[i]
                    d1 += t[i] * c[i]
                if d1 > 0:
                    d2 = 0.0
                    for i in range(n):
                        sacc = 0.0
                        for j in range(i + 1):
                            sacc += bm[i][j] * c[j]
                        for j in range(i + 1, n):
                            sacc += bm[j][i] * c[j]
                        xv[i] = sacc
                        d2 += sacc * c[i]
                    d2 = 1.0 + d2 / d1
                    for i in range(n):
                        for j in range(i + 1):
                            bm[i][j] += (d2 * t[i] * t[j] - xv[i] * t[j] - t[i] * xv[j]) / d1
                else:
                    ilast = gradcount
            else:
                if ilast < gradcount:
                    count = 0
                    ilast = gradcount
        else:
            count = 0
            if ilast == gradcount:
                count = n
            else:
                ilast = gradcount
        if it >= maxit:
            break
        if gradcount - ilast > 2 * n:
            ilast = gradcount
        if count == n and ilast == gradcount:
            break
    return np.array(b), fmin, int(it >= maxit)


def apeglm_optim_map(y, x, size, offset, sigma2, s2, shrink_mask, init):
    """apeglm's ``optimNbinom`` for each gene: R's BFGS on ``nbinomFn`` from ``init`` (``(G, P)``)."""
    out = np.array(init, dtype=float)
    fail = np.zeros(out.shape[0], int)
    for i in range(out.shape[0]):
        a = (x, y[i], size[i], offset[i], sigma2, s2, shrink_mask)
        cnst = -_r_nbinom_fn(out[i], *a, 0.0) - 1.0
        out[i], _, fail[i] = r_vmmin(lambda b, a=a, c=cnst: _r_nbinom_fn(b, *a, c), lambda b, a=a: _r_nbinom_gr(b, *a), out[i])
    return out, fail


def svalue(lfsr: np.ndarray) -> np.ndarray:
    """``apeglm::svalue``: running means of the sorted local false sign rates (NaN last)."""
    lfsr = np.asarray(lfsr, dtype=float)
    order = np.argsort(np.where(np.isnan(lfsr), np.inf, lfsr), kind="stable")
    srt = lfsr[order]
    means = np.cumsum(srt) / np.arange(1, lfsr.size + 1)
    out = np.empty_like(means)
    out[order] = means  # rank(ties = "first") of each value = its position in the stable sort
    return out


_svalue = svalue


_LBFGS = {"0.4-0": apeglm_cpp_map, "0.7-0": _apeglm_cpp_map_07}


def _apeglm(fit, k: int, res: pd.DataFrame, ape_adapt: bool, rcppnumerical: str = "0.4-0") -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    if k == 0 or (fit.design.has_intercept and fit.design.names[k] == "Intercept"):
        raise ValueError("coef: apeglm does not shrink the intercept; give another coefficient (R: \"'coef' must be greater than 2\")")
    x = np.asarray(fit.design.matrix, dtype=float)
    p = x.shape[1]
    y_all = np.asarray(fit.counts, dtype=float)
    disp = np.asarray(fit.gene["dispersion"], dtype=float)
    offset_all = np.asarray(_log_offset(fit), dtype=float)
    control = {"no_shrink": [0], "prior_mean": 0.0, "prior_scale": 1.0, "prior_df": 1.0,
               "prior_no_shrink_mean": 0.0, "prior_no_shrink_scale": _NO_SHRINK_SCALE}
    if ape_adapt:
        mle = LN2 * res["log2FoldChange"].to_numpy(dtype=float)
        se = LN2 * res["lfcSE"].to_numpy(dtype=float)
        a = ape_prior_variance(mle, se)
        control["no_shrink"] = [j for j in range(p) if j != k]
        control["prior_var"] = a
        control["prior_scale"] = min(math.sqrt(a), 1.0)
    shrink_mask = np.array([j not in control["no_shrink"] for j in range(p)])
    s2 = control["prior_scale"] ** 2
    sigma2 = _NO_SHRINK_SCALE**2
    g = y_all.shape[0]
    nonzero = y_all.sum(axis=1) > 0
    y, size, offset = y_all[nonzero], 1.0 / disp[nonzero], offset_all[nonzero]
    args = (x, y, size, offset, sigma2, s2, shrink_mask)
    # nbinomCppRoutine: the objective's scale at beta = 0, two L-BFGS runs from (.1, -.1, ...) and (-.1, .1, ...)
    cnst = np.sum((y + size[:, None]) * np.log(size[:, None] + np.exp(offset)), axis=1)
    cnst = np.where(cnst > 1, cnst, 1.0)
    init1 = np.resize(np.array([0.1, -0.1]), p)
    cpp_map = _LBFGS[rcppnumerical]
    b1, st1 = cpp_map(y, x, size, offset, sigma2, s2, shrink_mask, init1, cnst)
    b2, _ = cpp_map(y, x, size, offset, sigma2, s2, shrink_mask, -init1, cnst)
    conv = np.where(np.max(np.abs(b1 - b2), axis=1) > 0.01, -1, st1)
    beta = b1.copy()
    hess = _r_optim_hess(beta, args)
    var = _laplace_var(hess)
    # optimNbinomHess: rows the C++ fit did not converge on (or whose two starts disagree), or with a
    # non-positive variance, are optimised again in R: optim(method = "BFGS") from the C++ MAP, replayed
    redo = (conv != 0) | np.any(~(var > 0), axis=1)
    if redo.any():
        rr = np.flatnonzero(redo)
        start = b1[rr].copy()
        nan = np.any(np.isnan(start), axis=1)
        if nan.any():
            # apeglm.single without a prefit: rep(c(1, -1)) with log(basemean) for the intercept, basemean
            # over the samples whose design row has a single non-zero entry (all samples if none)
            alone = np.sum(x == 0, axis=1) == p - 1
            bm = y[rr[nan]][:, alone].mean(axis=1) if alone.any() else y[rr[nan]].mean(axis=1)
            st = np.tile(np.resize(np.array([1.0, -1.0]), p), (int(nan.sum()), 1))
            st[:, 0] = np.where(bm == 0, 0.0, np.log(np.where(bm == 0, 1.0, bm)))
            start[nan] = st
        bn, _ = apeglm_optim_map(y[rr], x, size[rr], offset[rr], sigma2, s2, shrink_mask, start)
        beta[rr] = bn
        var[rr] = _laplace_var(_r_optim_hess(bn, (x, y[rr], size[rr], offset[rr], sigma2, s2, shrink_mask)))
    bad = np.any(~(var > 0), axis=1)
    map_ = np.full((g, p), np.nan)
    sd = np.full((g, p), np.nan)
    map_[nonzero] = beta
    sd[nonzero] = np.sqrt(np.where(bad[:, None], np.nan, var))
    info = {"type": "apeglm", "package": "apeglm", "prior_control": control,
            "n_refit": int(redo.sum()), "refit_genes": list(np.asarray(fit.genes)[np.flatnonzero(nonzero)[redo]])}
    with np.errstate(invalid="ignore"):
        fsr = special.ndtr(-np.abs(map_[:, k]) / sd[:, k])
    return map_[:, k] * LOG2E, sd[:, k] * LOG2E, fsr, info


# ------------------------------------------------------------------------------------------------
# The entry point.
# ------------------------------------------------------------------------------------------------


def lfc_shrink(fit, coef, type: str = "apeglm", *, lfc_threshold: float = 0.0, ape_adapt: bool = True,
               svalue: bool = False, rcppnumerical: str = "0.4-0", shard: bool = True) -> pd.DataFrame:
    """R DESeq2's ``lfcShrink(dds, coef=coef, type=type)`` on a :class:`DESeq2Fit`.

    Args:
        fit: the result of :func:`fit_deseq2` (Wald or LRT; R shrinks either).
        coef: a coefficient name (``fit.design.names``, e.g. ``"condition_B_vs_A"``) or its 0-based index.
        type: ``"apeglm"`` (R's default) or ``"normal"``.
        lfc_threshold: R's ``lfcThreshold`` (log2). ``normal``: ``stat``, ``pvalue`` and ``padj`` become the
            shrunk fit's test of ``|LFC| > lfc_threshold`` (R's ``results(dds.shr, lfcThreshold=)``);
            ``apeglm``: the table carries FSOS ("false sign or small") s-values for that threshold instead
            of p-values (R switches ``svalue`` on).
        ape_adapt: apeglm only: adapt the Cauchy scale to the MLEs (R's ``apeAdapt``).
        svalue: apeglm only: return s-values instead of ``pvalue``/``padj`` (R's ``svalue=TRUE``).
        rcppnumerical: apeglm only: the RcppNumerical release whose L-BFGS apeglm's C++ MAP runs on, whose
            stopping point R reports: ``"0.4-0"`` (2019-2023: DESeq2 1.24-1.38 installs, the PyDESeq2
            fixtures) or ``"0.7-0"`` (2026, LBFGS++ 0.4.0). They stop at different points: up to ~1 relative
            on near-zero LFCs, a median of ~2e-5.
        shard: split genes across local devices (normal's refit).

    Returns:
        ``pandas.DataFrame`` indexed by gene, R's columns (normal: ``baseMean, log2FoldChange, lfcSE, stat,
        pvalue, padj``; apeglm: ``baseMean, log2FoldChange, lfcSE, pvalue, padj`` or ``..., svalue``).
        ``attrs["prior"]`` describes the prior: ``betaPriorVar`` per coefficient (log2 scale) for normal,
        apeglm's prior control (``prior_scale``, ``prior_var`` on the natural-log scale, ``no_shrink``
        0-based) for apeglm.

    Raises:
        ValueError: unknown ``type`` or ``coef``, the intercept for apeglm, ``svalue`` with normal, normal on a
            design with interactions.
    """
    if not isinstance(type, str) or type not in TYPES:
        raise ValueError(f"type: expected one of {list(TYPES)} ('ashr' is not available), got {type!r}")
    k = _coef_index(fit, coef)
    name = fit.design.names[k]
    if svalue and type != "apeglm":
        raise ValueError("svalue: s-values come with type='apeglm' only")
    if rcppnumerical not in _LBFGS:
        raise ValueError(f"rcppnumerical: expected one of {list(_LBFGS)}, got {rcppnumerical!r}")
    if isinstance(lfc_threshold, bool) or not isinstance(lfc_threshold, (int, float, np.integer, np.floating)) \
            or not np.isfinite(lfc_threshold) or lfc_threshold < 0:
        raise ValueError(f"lfc_threshold: expected a finite number >= 0 (log2 scale), got {lfc_threshold!r}")
    lfc_threshold = float(lfc_threshold)
    res = fit.results(name)
    if type == "normal":
        lfc, se, info, (beta, sigma) = _normal(fit, k, res, shard)
        replace = np.asarray(fit.gene.get("replace", np.zeros(len(lfc), bool)), bool)
        now_zero = replace & (np.asarray(fit.gene["baseMean"]) == 0)
        lfc[now_zero], se[now_zero] = 0.0, 0.0  # results() on the shrunk fit does the same
        out = res.copy()
        if lfc_threshold > 0:
            shrunk = dataclasses.replace(fit, beta=beta, sigma=sigma, test="wald")
            out = shrunk.results(name, lfc_threshold=lfc_threshold)
        out["log2FoldChange"] = lfc
        out["lfcSE"] = se
    else:
        lfc, se, fsr, info = _apeglm(fit, k, res, ape_adapt, rcppnumerical)
        out = res[["baseMean"]].copy()
        out["log2FoldChange"] = lfc
        out["lfcSE"] = se
        if lfc_threshold > 0:
            # apeglm's thresh: P(beta < T) for a positive MAP, P(beta > -T) for a negative one (flip.sign)
            m_, s_ = lfc * LN2, se * LN2
            t_ = LN2 * lfc_threshold
            with np.errstate(invalid="ignore"):
                p_ = special.ndtr((np.sign(m_) * t_ - m_) / s_)
            out["svalue"] = _svalue(np.where(m_ < 0, 1.0 - p_, p_))
        elif svalue:
            out["svalue"] = _svalue(fsr)
        else:
            out["pvalue"] = res["pvalue"]
            out["padj"] = res["padj"]
    out.attrs.update(res.attrs)
    out.attrs["lfcThreshold"] = lfc_threshold
    out.attrs["coef"] = name
    out.attrs["prior"] = info
    return out
