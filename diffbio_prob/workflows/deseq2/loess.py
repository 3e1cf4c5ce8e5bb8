"""R's ``loess`` for one predictor (``stats::loess(y ~ x)`` then ``predict(fit, newx)``), in numpy.

This is the computation R 4.2's ``simpleLoess`` / ``predLoess`` run with the defaults
``family = "gaussian"``, ``surface = "interpolate"``, ``statistics = "approximate"``, ``cell = 0.2``
(``loess.control``), ported from Cleveland, Grosse and Shyu's dloess as R ships it
(``src/library/stats/src/loessc.c`` and ``loessf.f``, R 4.2.2):

* ``loess_workspace``: ``nf = min(n, floor(n * span + 1e-5))`` nearest neighbours per local fit;
* ``ehg126``: the bounding box ``[min x - mu, max x + mu]`` with
  ``mu = 0.005 * max(range, 1e-10 * max(|min|, |max|) + 1e-30)``;
* ``ehg124`` / ``ehg129`` / ``ehg106`` / ``ehg125``: the k-d tree. A cell of ``l..u`` (ranks in a
  permutation ``pi`` of the data) is a leaf when it holds at most ``fc = floor(n * span * cell)``
  points; otherwise it is cut at the median ``x[pi[m]]``, ``m = (l + u) // 2`` (Floyd-Rivest
  selection, ties moved to one side as R's 2006 bug fix does), and the cut value becomes a vertex;
* ``ehg139`` / ``ehg127``: at every vertex ``q`` a local polynomial of the given degree fitted by
  weighted least squares on the ``nf`` nearest points, tricube weights
  ``(1 - (|x - q| / h)^3)^3`` with ``h`` the distance of the ``nf``-th nearest (times
  ``max(1, span)``), columns equilibrated, LINPACK QR (``dqrdc``/``dqrsl``) then the SVD of ``R``
  with singular values below ``100 * eps * sigma_1`` dropped; the vertex keeps the fitted value and
  slope;
* ``ehg128`` (via ``lowese``): a new point is located in its leaf cell and evaluated by the cubic
  Hermite interpolant of the two vertex values and slopes;
* ``predLoess``: points outside ``[min x, max x]`` get ``NaN`` (R's ``NA``).

The arithmetic follows the Fortran operation by operation (reference BLAS ``ddot`` / LAPACK 3.11
``dnrm2`` summation orders, ``x**3`` as ``x*x*x``), except the 3 x 3 SVD, which is LAPACK's
(numpy) instead of LINPACK's ``dsvdc``: vertex values then agree with R's to a few ulp, and
predictions to ~1e-15 relative (``tests/reference/data/loess``).

Public API: :func:`fit_loess` -> :class:`LoessFit`, :meth:`LoessFit.predict`, and
:func:`loess_predict` (fit and predict in one call).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

__all__ = ["LoessFit", "fit_loess", "loess_predict"]

_DBL_EPS = 2.220446049250313e-16  # d1mach(4)
_DBL_MAX = 1.7976931348623157e308  # d1mach(2)


# ------------------------------------------------------------------------------------------------
# Reference BLAS in its summation orders
# ------------------------------------------------------------------------------------------------

def _ddot(x, y) -> float:
    """Reference BLAS ``ddot`` with unit strides: the first ``n mod 5`` products, then groups of 5."""
    n = len(x)
    m = n % 5
    t = 0.0
    for i in range(m):
        t = t + x[i] * y[i]
    for i in range(m, n, 5):
        t = t + x[i] * y[i] + x[i + 1] * y[i + 1] + x[i + 2] * y[i + 2] + x[i + 3] * y[i + 3] + x[i + 4] * y[i + 4]
    return t


# LAPACK 3.10+ dnrm2.f90 (Anderson's safe scaling with Blue's constants), double precision.
_TSML = 2.0 ** math.ceil((-1021 - 1) * 0.5)  # real(radix)**ceiling((minexponent(0d0) - 1) * 0.5)
_TBIG = 2.0 ** math.floor((1024 - 53 + 1) * 0.5)  # real(radix)**floor((maxexponent - digits + 1) * 0.5)
_SSML = 2.0 ** (-math.floor((-1021 - 53) * 0.5))  # real(radix)**(-floor((minexponent - digits) * 0.5))
_SBIG = 2.0 ** (-math.ceil((1024 + 53 - 1) * 0.5))  # real(radix)**(-ceiling((maxexponent + digits - 1) * 0.5))


def _dnrm2(x) -> float:
    notbig = True
    asml = amed = abig = 0.0
    for xi in x:
        ax = abs(xi)
        if ax > _TBIG:
            abig = abig + (ax * _SBIG) * (ax * _SBIG)
            notbig = False
        elif ax < _TSML:
            if notbig:
                asml = asml + (ax * _SSML) * (ax * _SSML)
        else:
            amed = amed + ax * ax
    if abig > 0.0:
        if amed > 0.0 or amed != amed:
            abig = abig + (amed * _SBIG) * _SBIG
        scl = 1.0 / _SBIG
        sumsq = abig
    elif asml > 0.0:
        if amed > 0.0 or amed != amed:
            amed = math.sqrt(amed)
            asml = math.sqrt(asml) / _SSML
            if asml > amed:
                ymin, ymax = amed, asml
            else:
                ymin, ymax = asml, amed
            scl = 1.0
            sumsq = ymax * ymax * (1.0 + (ymin / ymax) * (ymin / ymax))
        else:
            scl = 1.0 / _SSML
            sumsq = asml
    else:
        scl = 1.0
        sumsq = amed
    return scl * math.sqrt(sumsq)


# ------------------------------------------------------------------------------------------------
# dloess pieces
# ------------------------------------------------------------------------------------------------

def _ehg106(il: int, ir: int, k: int, p, pi) -> None:
    """Floyd-Rivest selection (CACM Algorithm 489 without the sophisticated partition), in place on
    ``pi`` (0-based positions ``il..ir``): afterwards ``p[pi[k]]`` is the k-th smallest of the range,
    smaller ones before it and larger ones after."""
    l, r = il, ir
    while l < r:
        t = p[pi[k]]
        i, j = l, r
        pi[l], pi[k] = pi[k], pi[l]
        if t < p[pi[r]]:
            pi[l], pi[r] = pi[r], pi[l]
        while i < j:
            pi[i], pi[j] = pi[j], pi[i]
            i += 1
            j -= 1
            while p[pi[i]] < t:
                i += 1
            while t < p[pi[j]]:
                j -= 1
        if p[pi[l]] == t:
            pi[l], pi[j] = pi[j], pi[l]
        else:
            j += 1
            pi[r], pi[j] = pi[j], pi[r]
        if j <= k:
            l = j + 1
        if k <= j:
            r = j - 1


def _dqrdc_dqrsl(b: np.ndarray, eta: np.ndarray):
    """LINPACK ``dqrdc`` (no pivoting) on the ``nf x k`` matrix ``b`` in place, then ``dqrsl`` job
    1000 (``eta <- Q^T eta``) in place. Returns ``qraux``."""
    n, p = b.shape
    qraux = np.zeros(p)
    for l in range(min(n, p)):
        if l == n - 1:
            continue  # dqrdc: "if (l .eq. n) go to 190"
        col = b[l:, l]
        nrmxl = _dnrm2(col)
        if nrmxl == 0.0:
            continue
        if b[l, l] != 0.0:
            nrmxl = math.copysign(abs(nrmxl), b[l, l])
        b[l:, l] = (1.0 / nrmxl) * b[l:, l]  # dscal(n-l+1, 1/nrmxl, ...)
        b[l, l] = 1.0 + b[l, l]
        for j in range(l + 1, p):
            t = -_ddot(b[l:, l], b[l:, j]) / b[l, l]
            b[l:, j] = b[l:, j] + t * b[l:, l]  # daxpy
        qraux[l] = b[l, l]
        b[l, l] = -nrmxl
    # dqrsl, job 1000: qty
    ju = min(p, n - 1)
    for j in range(ju):
        if qraux[j] == 0.0:
            continue
        temp = b[j, j]
        b[j, j] = qraux[j]
        t = -_ddot(b[j:, j], eta[j:]) / b[j, j]
        eta[j:] = eta[j:] + t * b[j:, j]
        b[j, j] = temp
    return qraux


def _vertex_fit(q: float, x, y, rw, nf: int, span: float, k: int, psi) -> tuple[float, float]:
    """``ehg127`` at one vertex ``q`` for one predictor: value and slope of the local fit. ``psi`` is
    the neighbour permutation, carried from vertex to vertex as in ``ehg139``."""
    n = len(x)
    d = x - q
    dist = d * d
    _ehg106(0, n - 1, nf - 1, dist, psi)
    idx = np.asarray(psi[:nf])
    rho = dist[idx[nf - 1]] * max(1.0, span)
    if rho <= 0:
        raise FloatingPointError(
            f"loess: zero-width neighbourhood at x = {q!r} (more than nf = {nf} tied x values); make span bigger"
        )
    w = np.sqrt(dist[idx] / rho)
    w3 = w * w * w
    om = 1.0 - w3
    w = np.sqrt(rw[idx] * (om * om * om))
    if np.max(np.abs(w)) == 0.0:
        raise FloatingPointError(f"loess: all data on the boundary of the neighbourhood at x = {q!r}; make span bigger")
    b = np.empty((nf, k))
    b[:, 0] = w
    if k >= 2:
        dq = x[idx] - q
        b[:, 1] = w * dq
        if k >= 3:
            b[:, 2] = w * (dq * dq)
    eta = w * y[idx]
    colnor = np.ones(k)
    for j in range(k):
        scal = 0.0
        for v in b[:, j]:
            scal = scal + v * v
        scal = math.sqrt(scal)
        if 0.0 < scal:
            b[:, j] = b[:, j] / scal
            colnor[j] = scal
    _dqrdc_dqrsl(b, eta)
    r = np.triu(b[:k, :k])
    u, sigma, vt = np.linalg.svd(r)
    e = vt.T / colnor[:, None]  # "compensate for equilibration": e(j, :) / colnor(j)
    tol = sigma[0] * (100 * _DBL_EPS)
    dgamma = np.zeros(k)
    for j in range(k):
        if tol < sigma[j]:
            dgamma[j] = _ddot(u[:, j], eta[:k]) / sigma[j]
    val = _ddot(e[0, :], dgamma)
    slope = _ddot(e[1, :], dgamma) if k >= 2 else 0.0
    return val, slope


def _build_kd_tree(x, fc: int, fd: float, nvmax: int):
    """``ehg126`` + ``ehg124`` for one predictor. Returns vertices, per-cell (a, xi, lo, hi, c)."""
    n = len(x)
    alpha = float(np.min(x))
    beta = float(np.max(x))
    mu = 0.005 * max(beta - alpha, 1e-10 * max(abs(alpha), abs(beta)) + 1e-30)
    verts = [alpha - mu, beta + mu]
    ncmax = nvmax
    a, xi, lo, hi, c = [0], [0.0], [0], [n - 1], [[0, 1]]
    pi = list(range(n))
    p = 0
    l, u = 0, n - 1
    nc = 1
    while p < nc:
        diam = math.sqrt((verts[c[p][1]] - verts[c[p][0]]) ** 2)
        leaf = (u - l) + 1 <= fc or diam <= fd
        if not leaf:
            leaf = ncmax < nc + 2 or nvmax < len(verts) + 1.0  # nvmax < nv + vc/2, vc = 2
        if not leaf:
            m = (l + u + 2) // 2 - 1  # Fortran m = int((l+u)/2) on 1-based l, u
            _ehg106(l, u, m, x, pi)
            offset = 0
            while l <= m + offset < u:
                if offset < 0:
                    lower, check, upper = l, m + offset, m + offset
                else:
                    lower = m + offset + 1
                    check, upper = lower, u
                _ehg106(lower, upper, check, x, pi)
                if x[pi[m + offset]] == x[pi[m + offset + 1]]:
                    offset = -offset
                    if offset >= 0:
                        offset += 1
                else:
                    m = m + offset
                    break
            t = x[pi[m]]
            leaf = verts[c[p][0]] == t or verts[c[p][1]] == t
        if leaf:
            a[p] = 0
        else:
            a[p] = 1
            xi[p] = t
            # ehg125: the cut value is a new vertex unless it already is one
            try:
                vnew = verts.index(t)
            except ValueError:
                verts.append(t)
                vnew = len(verts) - 1
                if len(verts) > nvmax:
                    raise RuntimeError("loess: nv > nvmax in cpvert")
            left, right = c[p]
            a += [0, 0]
            xi += [0.0, 0.0]
            lo[p] = nc
            hi[p] = nc + 1
            lo += [l, m + 1]
            hi += [m, u]
            c += [[left, vnew], [vnew, right]]
            nc += 2
        p += 1
        if p < nc:
            l, u = lo[p], hi[p]
    return (np.array(verts), np.array(a), np.array(xi), np.array(lo), np.array(hi), np.array(c))


@dataclass(frozen=True)
class LoessFit:
    """An interpolating loess fit: k-d tree cells and vertex values/slopes (R's ``fit$kd``)."""

    x_range: tuple[float, float]
    vertices: np.ndarray  # (nv,) vertex positions, R's kd$vert are the first two
    vval: np.ndarray  # (nv, 2): fitted value and slope at each vertex
    a: np.ndarray  # per cell: 0 leaf, 1 cut on x
    xi: np.ndarray  # per cell: cut value
    lo: np.ndarray  # per cell: left child (cut cells)
    hi: np.ndarray  # per cell: right child
    cells: np.ndarray  # (nc, 2) vertex indices of each cell
    span: float
    degree: int
    nf: int
    fc: int

    def predict(self, newx) -> np.ndarray:
        """``predict(fit, newx)``: ``ehg128``'s cubic Hermite interpolation; ``NaN`` outside the data range."""
        z = np.asarray(newx, dtype=float)
        shape = z.shape
        z = z.ravel()
        out = np.full(z.shape, np.nan)
        inside = (z >= self.x_range[0]) & (z <= self.x_range[1])
        zi = z[inside]
        j = np.zeros(zi.shape, dtype=int)
        while True:
            cut = self.a[j] != 0
            if not cut.any():
                break
            go_lo = zi <= self.xi[j]
            j = np.where(cut, np.where(go_lo, self.lo[j], self.hi[j]), j)
        ll = self.cells[j, 0]
        ur = self.cells[j, 1]
        vl = self.vertices[ll]
        vu = self.vertices[ur]
        h = (zi - vl) / (vu - vl)
        omh = 1 - h
        phi0 = (omh * omh) * (1 + 2 * h)
        phi1 = (h * h) * (3 - 2 * h)
        psi0 = h * (omh * omh)
        psi1 = (h * h) * (h - 1)
        g0l, g1l = self.vval[ll, 0], self.vval[ll, 1]
        g0u, g1u = self.vval[ur, 0], self.vval[ur, 1]
        out[inside] = phi0 * g0l + phi1 * g0u + (psi0 * g1l + psi1 * g1u) * (vu - vl)
        return out.reshape(shape)


def _check_1d(name: str, v) -> np.ndarray:
    try:
        arr = np.asarray(v, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a 1-D array of numbers") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (R's loess drops NA rows via na.action; do that first)")
    return arr


def fit_loess(x, y, span: float = 0.75, degree: int = 2, weights=None, cell: float = 0.2) -> LoessFit:
    """``loess(y ~ x, span = span, degree = degree, weights = weights)`` with one numeric predictor,
    ``family = "gaussian"`` and R's default ``loess.control()`` (``surface = "interpolate"``,
    ``cell = 0.2``). ``x``, ``y`` (and ``weights``) finite 1-D arrays of one length."""
    x = _check_1d("x", x)
    y = _check_1d("y", y)
    n = x.size
    if n == 0:
        raise ValueError("x must not be empty")
    if y.size != n:
        raise ValueError(f"y must have the length of x ({n}), got {y.size}")
    if weights is None:
        rw = np.ones(n)
    else:
        rw = _check_1d("weights", weights)
        if rw.size != n:
            raise ValueError(f"weights must have the length of x ({n}), got {rw.size}")
        if np.any(rw < 0):
            raise ValueError("weights must be non-negative")
    if isinstance(span, bool) or not isinstance(span, numbers.Real) or not math.isfinite(span) or span <= 0:
        raise ValueError(f"span must be a positive finite number, got {span!r}")
    if isinstance(degree, bool) or not isinstance(degree, numbers.Integral) or degree not in (0, 1, 2):
        raise ValueError(f"degree must be 0, 1 or 2, got {degree!r}")
    if isinstance(cell, bool) or not isinstance(cell, numbers.Real) or not math.isfinite(cell) or cell <= 0:
        raise ValueError(f"cell must be a positive finite number, got {cell!r}")
    span = float(span)
    degree = int(degree)
    nf = min(n, int(math.floor(n * span + 1e-5)))
    if nf <= 0:
        raise ValueError(f"span is too small: floor(n * span) = 0 neighbours (n = {n}, span = {span})")
    k = (1, 2, 3)[degree]
    if k > nf - 1:
        raise ValueError(
            f"span too small: {nf} neighbours for {k} local coefficients (R: 'fewer data values than degrees of freedom')"
        )
    fc = int(math.floor(n * (span * cell)))  # ifloor(iv(3) * wv(2)), wv(2) = span * cell
    fd = 0.0  # wv(3) = 0: no diameter criterion
    nvmax = max(200, n)
    verts, a, xi, lo, hi, cells = _build_kd_tree(x, fc, fd, nvmax)
    psi = list(range(n))
    vval = np.empty((verts.size, 2))
    for i, q in enumerate(verts):
        vval[i] = _vertex_fit(float(q), x, y, rw, nf, span, k, psi)
    return LoessFit(
        x_range=(float(x.min()), float(x.max())), vertices=verts, vval=vval, a=a, xi=xi, lo=lo, hi=hi,
        cells=cells, span=span, degree=degree, nf=nf, fc=fc,
    )


def loess_predict(x, y, newx, span: float = 0.75, degree: int = 2, weights=None, cell: float = 0.2) -> np.ndarray:
    """``predict(loess(y ~ x, span = span, degree = degree), newx)``; ``NaN`` outside ``range(x)``."""
    return fit_loess(x, y, span=span, degree=degree, weights=weights, cell=cell).predict(newx)
