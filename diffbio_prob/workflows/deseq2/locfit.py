"""R ``locfit``'s one-predictor local regression, as DESeq2's ``fitType = "local"`` calls it, in numpy.

DESeq2 (``R/core.R``, ``localDispersionFit``) fits ``locfit(logDisps ~ logMeans, weights = means)``
with every locfit default, and predicts the trend with ``predict.locfit``. This module reproduces
that computation step by step from locfit 1.5-9.7's C source (C. Loader, *Local Regression and
Likelihood*, Springer 1999; the R package ``locfit``, files ``src/*.c`` named below), to rounding
error: the quasi-Gaussian family with the identity link (one weighted least-squares step, no
iterations), the tricube kernel, a nearest-neighbour bandwidth (fraction ``alpha = 0.7``, no fixed
``h``), local quadratics, a global parametric component subtracted before interpolation, and the
default adaptive-tree evaluation structure (``ev = rbox(cut = 0.8)``, ``ETREE``) whose vertex values
and slopes are joined by cubic Hermite pieces (and continued linearly, plus the parametric
component, outside the data range). The arithmetic follows the C code operation by operation
(sums in C's order, locfit's own Jacobi eigensolver), because that solver stops at off-diagonals
``x_ij^2 <= 1e-15 |x_ii x_jj|`` and so carries a truncation of ~1e-8 that a different but equally
accurate solve would not share; done this way the predictions are bit-identical to R's on every
test fixture (``tests/reference/data/locfit``). Public API: :func:`fit_locfit` -> :class:`LocfitFit`,
:meth:`LocfitFit.predict` (also :func:`predict_locfit`), and :func:`local_dispersion_fit`
(DESeq2's function) -> :class:`LocalDispersionFunction`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

__all__ = [
    "LocalDispersionFunction",
    "LocfitFit",
    "fit_locfit",
    "local_dispersion_fit",
    "predict_locfit",
]

# Constants from locfit's C source.
_E_TOL = 1.0e-8  # m_eigen.c: eigenvalues below E_TOL * max are not inverted
_E_MAXIT = 20  # m_eigen.c: Jacobi sweeps
_NN_EPS = 1.0e-12  # locfit.c: (int)(n * alpha + 1e-12) nearest neighbours


@dataclass(frozen=True, eq=False)
class LocfitFit:
    """A fitted locfit model of one predictor: tree vertices, their local fits and the parametric part.

    Mirrors what ``locfit.raw`` returns in ``fit$eva`` (``xev``, ``coef[, 1:2]``, ``pc``): vertices
    are in locfit's creation order (the two ends of the data range, then the midpoints added by
    ``atree_grow`` in ``src/ev_atree.c``, depth first, left half first). ``values`` and ``slopes`` are
    the local polynomial's intercept and first derivative at each vertex (the full local fit; R
    stores them minus the parametric component, which :meth:`predict` subtracts the same way,
    ``subparcomp`` in ``src/pcomp.c``). ``bandwidths`` are the nearest-neighbour ``h`` per vertex
    (``fit$eva`` is silent on them; ``lf_nbhd.c``), ``pc_center``/``pc_coef`` the global weighted
    polynomial ``sum_j pc_coef[j] (x - pc_center)^j / j!`` (``compparcomp``), and ``box`` the fit
    range ``(min x, max x)`` (``fit$box``).
    """

    vertices: np.ndarray
    values: np.ndarray
    slopes: np.ndarray
    bandwidths: np.ndarray
    pc_center: float
    pc_coef: np.ndarray
    box: tuple[float, float]
    alpha: float
    deg: int
    cut: float
    n: int

    def predict(self, xnew: np.ndarray | float) -> np.ndarray:
        """R's ``predict(fit, newdata)`` for this fit: locfit's tree interpolation at ``xnew``.

        As ``preplot`` -> ``dointpoint`` -> ``atree_int`` -> ``rectcell_interp`` (``src/preplot.c``,
        ``src/ev_interp.c``, ``src/ev_atree.c``): find the terminal cell ``[a, b]`` holding ``x``
        (the leftmost / rightmost cell beyond the range), interpolate the vertex values minus the
        parametric component with a cubic Hermite piece (``hermite2``; linear in the slope at the
        nearer end outside ``[a, b]``, so outside the data range R extrapolates the boundary
        vertex's value and slope linearly), then add the parametric component at ``x``
        (``addparcomp``). For ``deg = 0`` locfit stores no slopes and interpolates linearly. R never
        returns NA here, outside the data range included, except that ``preplot.locfit`` turns a
        value exactly equal to its sentinel 0.1278433 into NA, which this port does not. Returns an
        array shaped like ``xnew``; raises ``ValueError`` on non-finite ``xnew``.
        """
        return predict_locfit(self, xnew)


def _fitfun_value(dx: np.ndarray | float, deg: int) -> list:
    """locfit's basis at offset ``dx`` (``fitfun`` in ``src/lf_fitfun.c``): ``dx^j / j!``, j = 0..deg."""
    f = [np.ones_like(dx) if isinstance(dx, np.ndarray) else 1.0]
    for j in range(1, deg + 1):
        f.append(f[j - 1] * dx / j)
    return f


def _fitfun_deriv(dx: np.ndarray | float, deg: int) -> list:
    """The basis' first derivative (``fitfun`` with one ``deriv``): 0, 1, dx, dx^2/2, ..."""
    zero = np.zeros_like(dx) if isinstance(dx, np.ndarray) else 0.0
    f = [zero]
    if deg >= 1:
        f.append(np.ones_like(dx) if isinstance(dx, np.ndarray) else 1.0)
        for j in range(2, deg + 1):
            f.append(f[j - 1] * dx / (j - 1))
    return f


def _innerprod(coef: np.ndarray, f: list):
    """``innerprod`` (``src/m_vector.c``): the sum in index order, as C accumulates it."""
    s = 0.0
    for c, fj in zip(coef, f):
        s = s + c * fj
    return s


def _jacobi_eig(z: list[list[float]]) -> tuple[list[float], list[float]]:
    """locfit's cyclic Jacobi eigendecomposition (``eig_dec`` in ``src/m_eigen.c``), ported as is.

    ``z`` is the p x p symmetric matrix; returns the diagonalised matrix and the rotation ``P``
    (eigenvectors in its columns), both row major as in C. Off-diagonal entries with
    ``z_ij^2 <= 1e-15 |z_ii z_jj|`` count as zero, so the result carries that (small) truncation,
    which is why the arithmetic is reproduced operation by operation.
    """
    d = len(z)
    x = [float(v) for row in z for v in row]
    p = [1.0 if i == j else 0.0 for i in range(d) for j in range(d)]
    for _ in range(_E_MAXIT):
        ms = False
        for i in range(d):
            for j in range(i + 1, d):
                if x[i * d + j] * x[i * d + j] > 1.0e-15 * abs(x[i * d + i] * x[j * d + j]):
                    c = (x[j * d + j] - x[i * d + i]) / 2
                    s = -x[i * d + j]
                    r = math.sqrt(c * c + s * s)
                    c /= r
                    s = math.sqrt((1 - c) / 2) * (2 * (s > 0) - 1)
                    c = math.sqrt((1 + c) / 2)
                    for k in range(d):
                        u, v = x[i * d + k], x[j * d + k]
                        x[i * d + k] = u * c + v * s
                        x[j * d + k] = v * c - u * s
                    for k in range(d):
                        u, v = x[k * d + i], x[k * d + j]
                        x[k * d + i] = u * c + v * s
                        x[k * d + j] = v * c - u * s
                    x[i * d + j] = x[j * d + i] = 0.0
                    for k in range(d):
                        u, v = p[k * d + i], p[k * d + j]
                        p[k * d + i] = u * c + v * s
                        p[k * d + j] = v * c - u * s
                    ms = True
        if not ms:
            break
    return x, p


def _jacob_solve(z: list[list[float]], v: list[float]) -> list[float]:
    """``(X'WX)^{-1} v`` as locfit solves it (``jacob_solve`` with ``JAC_EIGD``, ``src/m_jacob.c``).

    The matrix is scaled to unit diagonal, diagonalised by Jacobi rotations, and eigen-directions
    with eigenvalue ``<= 1e-8 * max`` are left undivided (``eig_solve``): in effect a pseudo-inverse
    for the rank-deficient windows that ties or tiny windows can produce, the exact solve otherwise.
    """
    d = len(v)
    dg = [0.0 if z[i][i] <= 0 else 1 / math.sqrt(z[i][i]) for i in range(d)]
    zs = [[z[i][j] * (dg[i] * dg[j]) for j in range(d)] for i in range(d)]
    dmat, p = _jacobi_eig(zs)
    xv = [v[i] * dg[i] for i in range(d)]
    mx = dmat[0]
    for i in range(1, d):
        mx = max(mx, dmat[i * (d + 1)])
    tol = _E_TOL * mx
    w = []
    for i in range(d):
        s = 0.0
        for j in range(d):
            s += p[j * d + i] * xv[j]
        if dmat[i * d + i] > tol:
            s /= dmat[i * (d + 1)]
        w.append(s)
    out = []
    for i in range(d):
        s = 0.0
        for j in range(d):
            s += p[i * d + j] * w[j]
        out.append(s * dg[i])
    return out


def _csum(terms: np.ndarray) -> float:
    """A left-to-right sum, as locfit's C loops accumulate (``np.cumsum`` adds sequentially)."""
    return float(np.cumsum(terms)[-1]) if terms.size else 0.0


def _weighted_ls_step(
    x: np.ndarray, y: np.ndarray, pw: np.ndarray, kw: np.ndarray, x0: float, deg: int
) -> np.ndarray:
    """One locfit Gaussian fit at ``x0``: prior weights ``pw``, kernel weights ``kw``, points in C's order.

    ``reginit`` (``src/locfit.c``) starts at the weighted mean, ``likereg`` forms the score
    ``X'W(y - mean)`` and ``X'WX`` with the basis ``(x - x0)^j / j!`` (``fitfun``), and ``max_nr``
    (``src/m_max.c``) takes exactly one Newton step (``likereg`` stops Gaussian/identity fits after
    it): coefficients = start + ``jacob_solve`` of the score. Every product and sum is formed in
    the order the C code forms it, so the coefficients agree with R's to rounding.
    """
    s0 = _csum(kw * pw)
    s1 = _csum(kw * (pw * y))
    c0 = s1 / s0
    cols = _fitfun_value(x - x0, deg)
    zdll = pw * (y - c0)
    zddll = kw * pw
    p = deg + 1
    f1 = [_csum((cols[j] * kw) * zdll) for j in range(p)]
    zmat = [[_csum((zddll * cols[i]) * cols[j]) for j in range(p)] for i in range(p)]
    delta = _jacob_solve(zmat, f1)
    # max_nr: coef = start + 1.0 * delta, the start being (mean, 0, ..., 0).
    return np.array([c0 + delta[0]] + [0.0 + dj for dj in delta[1:]])


def _nn_bandwidth(dist: np.ndarray, k: int) -> float:
    """locfit's nearest-neighbour bandwidth (``compbandwid``/``kordstat`` in ``src/lf_nbhd.c``).

    The ``k``-th smallest distance for ``k < n``; for ``k >= n`` the largest distance times
    ``k / n`` (``d = 1``); 0 for ``k < 1``. No fixed ``h`` (``fixh = 0``) is combined with it.
    ``nbhd1``'s search for sorted data returns the same order statistic.
    """
    n = dist.size
    if k < 1:
        return 0.0
    if k < n:
        return float(np.partition(dist, k - 1)[k - 1])
    return float(dist.max()) * math.exp(math.log(1.0 * k / n) / 1)


def _tricube(dist: np.ndarray, h: float) -> np.ndarray:
    """Tricube kernel weights ``(1 - (d/h)^3)^3`` for ``d/h <= 1`` (``W``/``weightsph``, ``src/weight.c``)."""
    if h == 0:
        return np.where(dist == 0.0, 1.0, 0.0)
    u = dist / h
    v = 1 - u * u * u
    return np.where(u > 1, 0.0, v * v * v)


def _window(x: np.ndarray, x0: float, h: float, ordered: bool) -> np.ndarray:
    """Indices of the points with positive kernel weight, in the order locfit visits them.

    ``nbhd`` (``src/lf_nbhd.c``) keeps data order; for data sorted ascending ``nbhd1`` walks left
    from the last point ``<= x0`` (the nearest point, moved left if above ``x0``) and then right,
    each walk stopping at the first zero weight.
    """
    dist = np.abs(x - x0)
    pos = np.flatnonzero(_tricube(dist, h) > 0)
    if not ordered:
        return pos
    n = x.size
    if x0 <= x[0]:
        z = 0
    elif x0 >= x[n - 1]:
        z = n - 1
    else:
        lo, hi = 0, n - 1
        while hi - lo > 1:
            mid = (hi + lo) // 2
            if x[mid] > x0:
                hi = mid
            else:
                lo = mid
        z = hi if (x0 - x[lo]) > (x[hi] - x0) else lo
    if x[z] > x0:
        z -= 1
    left = pos[pos <= z][::-1]
    right = pos[pos > z]
    # The walks stop at the first zero weight; weights fall with distance, so the positive-weight
    # points on each side are contiguous and these are exactly the points nbhd1 keeps.
    return np.concatenate([left, right])


def _fit_vertex(x, y, w, x0, k, deg, ordered):
    """``procvraw`` (``src/procv.c``) at one vertex: the bandwidth and the local coefficients."""
    dist = np.abs(x - x0)
    h = _nn_bandwidth(dist, k)
    idx = _window(x, x0, h, ordered)
    if idx.size == 0:
        raise ValueError(
            f"locfit: no data point has positive kernel weight at the fitting point {x0!r} "
            f"(bandwidth {h!r}); increase alpha or the number of distinct x values"
        )
    kw = _tricube(dist[idx], h)
    coef = _weighted_ls_step(x[idx], y[idx], w[idx], kw, x0, deg)
    return h, coef


def _max_vertices(alpha: float, cut: float) -> int:
    """The vertex space ``atree_guessnv`` (``src/ev_atree.c``) allots for d = 1, ``maxk = 100``."""
    vc = 2
    a0 = 1.0 if alpha > 1 else 1.0 / alpha
    cu = min(1.0, cut)
    nvm = int((5 * a0 / cu + 1) * vc)
    return int(1.0 * nvm)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr = np.array(arr, dtype=float)
    arr.flags.writeable = False
    return arr


def _as_vector(name: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; {int(np.sum(~np.isfinite(arr)))} value(s) are not")
    return arr


def fit_locfit(
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    alpha: float = 0.7,
    deg: int = 2,
    cut: float = 0.8,
) -> LocfitFit:
    """R's ``locfit(y ~ x, weights = weights, alpha = alpha, deg = deg, ev = rbox(cut = cut))``.

    The default Gaussian (``qgaussian``) family, identity link, tricube kernel, no scaling, and the
    adaptive tree (``atree_start``/``atree_grow``/``atree_split`` in ``src/ev_atree.c``, Loader 1999
    ch. 12): the fit region is ``[min x, max x]`` (``set_flim``), a local fit is made at both ends,
    and a cell is halved (a new fitted vertex at its midpoint) while its length exceeds ``cut``
    times the smaller bandwidth of its two vertices. Each local fit (``procvraw``) uses the
    ``k = int(n * alpha + 1e-12)`` nearest neighbours' distance as bandwidth (``lf_nbhd.c``) and
    solves a weighted least-squares polynomial of degree ``deg`` with weights ``weights * tricube``.
    The global weighted polynomial fit (``compparcomp`` in ``src/pcomp.c``) is kept for
    interpolation as locfit keeps it. ``weights`` defaults to ones and must be positive; at least
    ``int(n * alpha) >= deg + 2`` points are required so every window holds ``deg + 1`` points of
    positive weight, and ``x`` must not be constant. Raises ``ValueError`` when the tree needs more
    vertices than locfit allots (R's ``newsplit: out of vertex space``).
    """
    xv = _as_vector("x", x)
    yv = _as_vector("y", y)
    if yv.size != xv.size:
        raise ValueError(f"y has {yv.size} values but x has {xv.size}; they must have the same length")
    if weights is None:
        wv = np.ones_like(xv)
    else:
        wv = _as_vector("weights", weights)
        if wv.size != xv.size:
            raise ValueError(
                f"weights has {wv.size} values but x has {xv.size}; they must have the same length"
            )
        if np.any(wv <= 0):
            raise ValueError(f"weights must be positive; {int(np.sum(wv <= 0))} value(s) are <= 0")
    if not (isinstance(deg, numbers.Integral) and not isinstance(deg, bool) and 0 <= deg <= 3):
        raise ValueError(f"deg must be an integer in 0..3, got {deg!r}")
    deg = int(deg)
    if not (_is_real(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a positive finite number, got {alpha!r}")
    if not (_is_real(cut) and cut > 0):
        raise ValueError(f"cut must be a positive finite number, got {cut!r}")
    alpha = float(alpha)
    cut = max(float(cut), 0.01)  # atree_guessnv raises cut below 0.01 to 0.01 (with a warning)
    n = xv.size
    k = int(n * alpha + _NN_EPS)
    if k < deg + 2:
        raise ValueError(
            f"x has too few points: the nearest-neighbour window int(n * alpha) = {k} (n = {n}, "
            f"alpha = {alpha}) must hold at least deg + 2 = {deg + 2} points"
        )
    lo, hi = float(xv.min()), float(xv.max())
    if not hi > lo:
        raise ValueError("x must take at least two distinct values (locfit's fit range is empty)")

    # compparcomp: global fit centred at the prior-weighted mean of x, all kernel weights 1.
    pc_center = _csum(xv * wv) / _csum(wv)
    # startlf: lfd.ord (data sorted ascending) selects nbhd1's visiting order.
    ordered = bool(np.all(xv[1:] >= xv[:-1])) and k <= n
    pc_coef = _weighted_ls_step(xv, yv, wv, np.ones_like(xv), pc_center, deg)

    max_nv = _max_vertices(alpha, cut)
    verts: list[float] = []
    hs: list[float] = []
    coefs: list[np.ndarray] = []

    def add_vertex(x0: float) -> int:
        if len(verts) == max_nv:
            raise ValueError(
                f"locfit's adaptive tree needs more than {max_nv} vertices (R: 'newsplit: out of "
                f"vertex space'); use a larger alpha or cut"
            )
        h, coef = _fit_vertex(xv, yv, wv, x0, k, deg, ordered)
        verts.append(x0)
        hs.append(h)
        coefs.append(coef)
        return len(verts) - 1

    fl0, fl1 = lo, hi

    def grow(i0: int, i1: int, ll: float, ur: float) -> None:
        # atree_split: score against the smallest positive bandwidth of the cell's vertices.
        hmin = 0.0
        for i in (i0, i1):
            h = hs[i]
            if h > 0 and (hmin == 0 or h < hmin):
                hmin = h
        le = ur - ll
        score = 2 * (ur - ll) / (fl1 - fl0) if hmin == 0 else le / hmin
        if not cut < score:
            return
        # Pseudo-vertices (le < cut * min h) cannot occur in one dimension once a split is due.
        mid = add_vertex((verts[i0] + verts[i1]) / 2)
        grow(i0, mid, ll, (ur + ll) / 2)
        grow(mid, i1, (ll + ur) / 2, ur)

    a = add_vertex(lo)
    b = add_vertex(hi)
    grow(a, b, lo, hi)

    coef_arr = np.array(coefs)
    return LocfitFit(
        vertices=_readonly(verts),
        values=_readonly(coef_arr[:, 0]),
        slopes=_readonly(coef_arr[:, 1] if deg >= 1 else np.zeros(len(verts))),
        bandwidths=_readonly(hs),
        pc_center=pc_center,
        pc_coef=_readonly(pc_coef),
        box=(lo, hi),
        alpha=alpha,
        deg=deg,
        cut=cut,
        n=n,
    )


def predict_locfit(fit: LocfitFit, xnew: np.ndarray | float) -> np.ndarray:
    """R's ``predict(fit, newdata)`` (identity link): see :meth:`LocfitFit.predict`."""
    xq = np.asarray(xnew, dtype=float)
    shape = xq.shape
    xq = xq.reshape(-1)
    if not np.all(np.isfinite(xq)):
        raise ValueError(f"xnew must be finite; {int(np.sum(~np.isfinite(xq)))} value(s) are not")
    deg = fit.deg
    # subparcomp: vertex values and slopes minus the parametric component.
    dxv = fit.vertices - fit.pc_center
    rv = fit.values - _innerprod(fit.pc_coef, _fitfun_value(dxv, deg))
    rs = fit.slopes - _innerprod(fit.pc_coef, _fitfun_deriv(dxv, deg)) if deg >= 1 else None

    order = np.argsort(fit.vertices, kind="stable")
    vs = fit.vertices[order]
    cell = np.clip(np.searchsorted(vs, xq, side="right") - 1, 0, vs.size - 2)
    i0, i1 = order[cell], order[cell + 1]
    ll, ur = fit.vertices[i0], fit.vertices[i1]
    z = ur - ll
    t = xq - ll
    if rs is None:  # linear_interp
        out = ((z - t) * rv[i0] + t * rv[i1]) / z
    else:  # hermite2, then rectcell_interp's sum
        hh = t / z
        phi1 = hh * hh * (3 - 2 * hh)
        phi0 = 1 - phi1
        phi2 = hh * (1 - hh) * (1 - hh)
        phi3 = hh * hh * (hh - 1)
        below, above = hh < 0, hh > 1
        phi0 = np.where(below, 1.0, np.where(above, 0.0, phi0))
        phi1 = np.where(below, 0.0, np.where(above, 1.0, phi1))
        phi2 = np.where(below, hh, np.where(above, 0.0, phi2))
        phi3 = np.where(below, 0.0, np.where(above, hh - 1, phi3))
        phi2 = phi2 * z
        phi3 = phi3 * z
        out = phi0 * rv[i0] + phi1 * rv[i1] + phi2 * rs[i0] + phi3 * rs[i1]
    # addparcomp
    out = out + _innerprod(fit.pc_coef, _fitfun_value(xq - fit.pc_center, deg))
    return out.reshape(shape)


@dataclass(frozen=True, eq=False)
class LocalDispersionFunction:
    """DESeq2's local dispersion trend: ``means -> exp(predict(fit, log(means)))``, or ``min_disp``.

    ``fit`` is the :class:`LocfitFit` of ``log(disps) ~ log(means)`` (``None`` when every
    dispersion was below ``10 * min_disp``, where the trend is the constant ``min_disp``). Calling
    it with positive finite means returns an array of trend dispersions shaped like ``means``.
    """

    fit: LocfitFit | None
    min_disp: float

    def __call__(self, means: np.ndarray | float) -> np.ndarray:
        m = np.asarray(means, dtype=float)
        if not np.all(np.isfinite(m)) or np.any(m <= 0):
            raise ValueError("means must be positive and finite to evaluate the local dispersion trend")
        if self.fit is None:
            return np.full(m.shape, self.min_disp)
        return np.exp(self.fit.predict(np.log(m)))


def local_dispersion_fit(means: np.ndarray, disps: np.ndarray, min_disp: float) -> LocalDispersionFunction:
    """DESeq2's ``localDispersionFit(means, disps, minDisp)`` (``R/core.R``), returning a callable.

    If every ``disps < 10 * min_disp`` the trend is the constant ``min_disp`` (R returns the vector
    ``rep(minDisp, length(disps))`` there, which its caller cannot reach, since
    ``estimateDispersionsFit`` passes only genes with ``dispGeneEst > 100 * minDisp``); otherwise
    :func:`fit_locfit` of ``x = log(means)``, ``y = log(disps)`` with ``weights = means`` over the
    genes with ``disps >= 10 * min_disp``, with all locfit defaults. To reproduce DESeq2's
    ``dispFit``, pass the ``useForFit`` genes (non-all-zero, ``dispGeneEst > 100 * minDisp``) and
    evaluate at every non-all-zero gene's ``baseMean``. Arguments must be finite, ``means`` and
    ``disps`` positive and of equal length, ``min_disp`` positive.
    """
    m = _as_vector("means", means)
    dsp = _as_vector("disps", disps)
    if m.size != dsp.size:
        raise ValueError(f"disps has {dsp.size} values but means has {m.size}; they must have the same length")
    if np.any(m <= 0):
        raise ValueError(f"means must be positive; {int(np.sum(m <= 0))} value(s) are <= 0")
    if np.any(dsp <= 0):
        raise ValueError(f"disps must be positive; {int(np.sum(dsp <= 0))} value(s) are <= 0")
    if not (_is_real(min_disp) and min_disp > 0):
        raise ValueError(f"min_disp must be a positive finite number, got {min_disp!r}")
    if np.all(dsp < min_disp * 10):
        return LocalDispersionFunction(fit=None, min_disp=float(min_disp))
    keep = dsp >= min_disp * 10
    fit = fit_locfit(np.log(m[keep]), np.log(dsp[keep]), m[keep])
    return LocalDispersionFunction(fit=fit, min_disp=float(min_disp))

