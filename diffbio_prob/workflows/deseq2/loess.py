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
  (``dsvdc``) with singular values at or below ``100 * eps * sigma_1`` dropped (R's "pseudoinverse
  used" case); the vertex keeps the fitted value and
  slope;
* ``ehg128`` (via ``lowese``): a new point is located in its leaf cell and evaluated by the cubic
  Hermite interpolant of the two vertex values and slopes;
* ``predLoess``: points outside ``[min x, max x]`` get ``NaN`` (R's ``NA``).

The arithmetic follows the Fortran operation by operation: LINPACK ``dqrdc`` / ``dqrsl`` and R's
``dsvdc`` (``src/appl``, with R's relative convergence tests), the reference BLAS of LAPACK 3.11 that
R links here (``ddot``'s unrolled summation, ``dnrm2.f90``'s scaled sums, ``drotg.f90``, ``drot``),
``x**3`` as gfortran's ``x*x*x``. Vertex values and predictions are bit-identical to R 4.2.2's on
every fixture in ``tests/reference/data/loess`` and on DESeq2's KL curves.

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
        t = (
            t
            + x[i] * y[i]
            + x[i + 1] * y[i + 1]
            + x[i + 2] * y[i + 2]
            + x[i + 3] * y[i + 3]
            + x[i + 4] * y[i + 4]
        )
    return t


# LAPACK 3.10+ dnrm2.f90 (Anderson's safe scaling with Blue's constants), double precision.
# tsml = radix**ceiling((minexponent - 1) / 2), tbig = radix**floor((maxexponent - digits + 1) / 2),
# ssml = radix**(-floor((minexponent - digits) / 2)), sbig = radix**(-ceiling((maxexponent + digits - 1) / 2))
_TSML = 2.0 ** math.ceil((-1021 - 1) * 0.5)
_TBIG = 2.0 ** math.floor((1024 - 53 + 1) * 0.5)
_SSML = 2.0 ** (-math.floor((-1021 - 53) * 0.5))
_SBIG = 2.0 ** (-math.ceil((1024 + 53 - 1) * 0.5))


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
        if amed > 0.0 or math.isnan(amed):
            abig = abig + (amed * _SBIG) * _SBIG
        scl = 1.0 / _SBIG
        sumsq = abig
    elif asml > 0.0:
        if amed > 0.0 or math.isnan(amed):
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


_SAFMIN = 2.0**-1022  # drotg.f90: radix**max(minexponent - 1, 1 - maxexponent)
_SAFMAX = 2.0**1023  # radix**max(1 - minexponent, maxexponent - 1)


def _drotg(a: float, b: float):
    """LAPACK 3.10+ ``drotg.f90``: returns (r, z, c, s) -- new ``a``, new ``b``, and the rotation."""
    anorm = abs(a)
    bnorm = abs(b)
    if bnorm == 0.0:
        return a, 0.0, 1.0, 0.0
    if anorm == 0.0:
        return b, 1.0, 0.0, 1.0
    scl = min(_SAFMAX, max(_SAFMIN, anorm, bnorm))
    sigma = math.copysign(1.0, a) if anorm > bnorm else math.copysign(1.0, b)
    ta = a / scl
    tb = b / scl
    r = sigma * (scl * math.sqrt(ta * ta + tb * tb))
    c = a / r
    s = b / r
    if anorm > bnorm:
        z = s
    elif c != 0.0:
        z = 1.0 / c
    else:
        z = 1.0
    return r, z, c, s


def _drot(x, y, c: float, s: float) -> None:
    """Reference BLAS ``drot`` on two numpy vectors in place."""
    for i in range(len(x)):
        dtemp = c * x[i] + s * y[i]
        y[i] = c * y[i] - s * x[i]
        x[i] = dtemp


def _dsvdc(x: np.ndarray):
    """LINPACK ``dsvdc`` as R ships it (``src/appl/dsvdc.f``, with R's relative convergence tests),
    job = 21 and ``u`` aliased to ``x`` as ``ehg127`` calls it, for a square ``k x k`` ``x`` (modified in
    place, returned as ``U``). Returns ``(s, U, V)`` with ``x = U diag(s) V^T``."""
    n = p = x.shape[0]
    u = x  # aliased: call dsvdc(u, 15, k, k, sigma, g, u, 15, e, 15, work, 21, info)
    # 1-based helpers
    s = [0.0] * (p + 2)
    e = [0.0] * (p + 2)
    work = [0.0] * (n + 2)
    v = np.zeros((p, p))
    X = lambda i, j: x[i - 1, j - 1]

    def setx(i, j, val):
        x[i - 1, j - 1] = val

    maxit = 30
    wantu = True
    wantv = True
    ncu = min(n, p)  # jobu = 2
    nct = min(n - 1, p)
    nrt = max(0, min(p - 2, n))
    lu = max(nct, nrt)
    for l in range(1, lu + 1):
        lp1 = l + 1
        if l <= nct:
            s[l] = _dnrm2(x[l - 1 : n, l - 1])
            if s[l] != 0.0:
                if X(l, l) != 0.0:
                    s[l] = math.copysign(abs(s[l]), X(l, l))
                x[l - 1 : n, l - 1] = (1.0 / s[l]) * x[l - 1 : n, l - 1]
                setx(l, l, 1.0 + X(l, l))
            s[l] = -s[l]
        if p >= lp1:
            for j in range(lp1, p + 1):
                if l <= nct and s[l] != 0.0:
                    t = -_ddot(x[l - 1 : n, l - 1], x[l - 1 : n, j - 1]) / X(l, l)
                    x[l - 1 : n, j - 1] = x[l - 1 : n, j - 1] + t * x[l - 1 : n, l - 1]
                e[j] = X(l, j)
        # u(i,l) = x(i,l): a no-op, u is x
        if l <= nrt:
            ev = np.array(e[lp1 : p + 1])
            e[l] = _dnrm2(ev)
            if e[l] != 0.0:
                if e[lp1] != 0.0:
                    e[l] = math.copysign(abs(e[l]), e[lp1])
                sc = 1.0 / e[l]
                for i in range(lp1, p + 1):
                    e[i] = sc * e[i]
                e[lp1] = 1.0 + e[lp1]
            e[l] = -e[l]
            if not (lp1 > n or e[l] == 0.0):
                for i in range(lp1, n + 1):
                    work[i] = 0.0
                for j in range(lp1, p + 1):
                    for i in range(lp1, n + 1):
                        work[i] = work[i] + e[j] * X(i, j)
                for j in range(lp1, p + 1):
                    t = -e[j] / e[lp1]
                    for i in range(lp1, n + 1):
                        setx(i, j, X(i, j) + t * work[i])
            for i in range(lp1, p + 1):
                v[i - 1, l - 1] = e[i]
    m = min(p, n + 1)
    nctp1 = nct + 1
    nrtp1 = nrt + 1
    if nct < p:
        s[nctp1] = X(nctp1, nctp1)
    if n < m:
        s[m] = 0.0
    if nrtp1 < m:
        e[nrtp1] = X(nrtp1, m)
    e[m] = 0.0
    if wantu:
        for j in range(nctp1, ncu + 1):
            u[:, j - 1] = 0.0
            u[j - 1, j - 1] = 1.0
        for ll in range(1, nct + 1):
            l = nct - ll + 1
            if s[l] != 0.0:
                lp1 = l + 1
                for j in range(lp1, ncu + 1):
                    t = (
                        -_ddot(u[l - 1 : n, l - 1], u[l - 1 : n, j - 1])
                        / u[l - 1, l - 1]
                    )
                    u[l - 1 : n, j - 1] = u[l - 1 : n, j - 1] + t * u[l - 1 : n, l - 1]
                u[l - 1 : n, l - 1] = -1.0 * u[l - 1 : n, l - 1]
                u[l - 1, l - 1] = 1.0 + u[l - 1, l - 1]
                u[0 : l - 1, l - 1] = 0.0
            else:
                u[:, l - 1] = 0.0
                u[l - 1, l - 1] = 1.0
    if wantv:
        for ll in range(1, p + 1):
            l = p - ll + 1
            lp1 = l + 1
            if l <= nrt and e[l] != 0.0:
                for j in range(lp1, p + 1):
                    t = (
                        -_ddot(v[lp1 - 1 : p, l - 1], v[lp1 - 1 : p, j - 1])
                        / v[lp1 - 1, l - 1]
                    )
                    v[lp1 - 1 : p, j - 1] = (
                        v[lp1 - 1 : p, j - 1] + t * v[lp1 - 1 : p, l - 1]
                    )
            v[:, l - 1] = 0.0
            v[l - 1, l - 1] = 1.0
    mm = m
    it = 0
    info = 0
    while m != 0:
        if it >= maxit:
            info = m
            break
        l = 0
        for ll in range(1, m + 1):
            l = m - ll
            if l == 0:
                break
            test = abs(s[l]) + abs(s[l + 1])
            ztest = test + abs(e[l])
            acc = abs(test - ztest) / (1.0e-100 + test)
            if not acc > 1.0e-15:
                e[l] = 0.0
                break
        if l == m - 1:
            kase = 4
        else:
            lp1 = l + 1
            mp1 = m + 1
            ls = l
            for lls in range(lp1, mp1 + 1):
                ls = m - lls + lp1
                if ls == l:
                    break
                test = 0.0
                if ls != m:
                    test = test + abs(e[ls])
                if ls != l + 1:
                    test = test + abs(e[ls - 1])
                ztest = test + abs(s[ls])
                acc = abs(test - ztest) / (1.0e-100 + test)
                if not acc > 1.0e-15:
                    s[ls] = 0.0
                    break
            if ls == l:
                kase = 3
            elif ls == m:
                kase = 1
            else:
                kase = 2
                l = ls
        l = l + 1
        if kase == 1:
            mm1 = m - 1
            f = e[m - 1]
            e[m - 1] = 0.0
            for kk in range(l, mm1 + 1):
                k = mm1 - kk + l
                t1, f, cs, sn = _drotg(s[k], f)
                s[k] = t1
                if k != l:
                    f = -sn * e[k - 1]
                    e[k - 1] = cs * e[k - 1]
                _drot(v[:, k - 1], v[:, m - 1], cs, sn)
        elif kase == 2:
            f = e[l - 1]
            e[l - 1] = 0.0
            for k in range(l, m + 1):
                t1, f, cs, sn = _drotg(s[k], f)
                s[k] = t1
                f = -sn * e[k]
                e[k] = cs * e[k]
                _drot(u[:, k - 1], u[:, l - 2], cs, sn)
        elif kase == 3:
            scale = max(abs(s[m]), abs(s[m - 1]), abs(e[m - 1]), abs(s[l]), abs(e[l]))
            sm = s[m] / scale
            smm1 = s[m - 1] / scale
            emm1 = e[m - 1] / scale
            sl = s[l] / scale
            el = e[l] / scale
            b = ((smm1 + sm) * (smm1 - sm) + emm1 * emm1) / 2.0
            c = (sm * emm1) * (sm * emm1)
            shift = 0.0
            if not (b == 0.0 and c == 0.0):
                shift = math.sqrt(b * b + c)
                if b < 0.0:
                    shift = -shift
                shift = c / (b + shift)
            f = (sl + sm) * (sl - sm) + shift
            g = sl * el
            mm1 = m - 1
            for k in range(l, mm1 + 1):
                f, g, cs, sn = _drotg(f, g)
                if k != l:
                    e[k - 1] = f
                f = cs * s[k] + sn * e[k]
                e[k] = cs * e[k] - sn * s[k]
                g = sn * s[k + 1]
                s[k + 1] = cs * s[k + 1]
                _drot(v[:, k - 1], v[:, k], cs, sn)
                f, g, cs, sn = _drotg(f, g)
                s[k] = f
                f = cs * e[k] + sn * s[k + 1]
                s[k + 1] = -sn * e[k] + cs * s[k + 1]
                g = sn * e[k + 1]
                e[k + 1] = cs * e[k + 1]
                if k < n:
                    _drot(u[:, k - 1], u[:, k], cs, sn)
            e[m - 1] = f
            it = it + 1
        else:  # kase 4: convergence
            if s[l] < 0.0:
                s[l] = -s[l]
                v[:, l - 1] = -1.0 * v[:, l - 1]
            while l != mm and not s[l] >= s[l + 1]:
                t = s[l]
                s[l] = s[l + 1]
                s[l + 1] = t
                if l < p:
                    tmp = v[:, l - 1].copy()
                    v[:, l - 1] = v[:, l]
                    v[:, l] = tmp
                if l < n:
                    tmp = u[:, l - 1].copy()
                    u[:, l - 1] = u[:, l]
                    u[:, l] = tmp
                l = l + 1
            it = 0
            m = m - 1
    return np.array(s[1 : p + 1]), u, v, info


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


def _vertex_fit(
    q: float, x, y, rw, nf: int, span: float, k: int, psi
) -> tuple[float, float]:
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
        raise FloatingPointError(
            f"loess: all data on the boundary of the neighbourhood at x = {q!r}; make span bigger"
        )
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
    sigma, u, v, info = _dsvdc(r)
    if info != 0:
        raise FloatingPointError(
            "loess: svddc failed in l2fit (LINPACK dsvdc did not converge)"
        )
    e = v / colnor[:, None]  # "compensate for equilibration": e(j, :) / colnor(j)
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
            leaf = (
                ncmax < nc + 2 or nvmax < len(verts) + 1.0
            )  # nvmax < nv + vc/2, vc = 2
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
    return (
        np.array(verts),
        np.array(a),
        np.array(xi),
        np.array(lo),
        np.array(hi),
        np.array(c),
    )


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
        raise ValueError(
            f"{name} must be finite (R's loess drops NA rows via na.action; do that first)"
        )
    return arr


def fit_loess(
    x, y, span: float = 0.75, degree: int = 2, weights=None, cell: float = 0.2
) -> LoessFit:
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
    if (
        isinstance(span, bool)
        or not isinstance(span, numbers.Real)
        or not math.isfinite(span)
        or span <= 0
    ):
        raise ValueError(f"span must be a positive finite number, got {span!r}")
    if (
        isinstance(degree, bool)
        or not isinstance(degree, numbers.Integral)
        or degree not in (0, 1, 2)
    ):
        raise ValueError(f"degree must be 0, 1 or 2, got {degree!r}")
    if (
        isinstance(cell, bool)
        or not isinstance(cell, numbers.Real)
        or not math.isfinite(cell)
        or cell <= 0
    ):
        raise ValueError(f"cell must be a positive finite number, got {cell!r}")
    span = float(span)
    degree = int(degree)
    nf = min(n, math.floor(n * span + 1e-5))
    if nf <= 0:
        raise ValueError(
            f"span is too small: floor(n * span) = 0 neighbours (n = {n}, span = {span})"
        )
    k = (1, 2, 3)[degree]
    if k > nf - 1:
        raise ValueError(
            f"span too small: {nf} neighbours for {k} local coefficients (R: 'fewer data values than degrees of freedom')"
        )
    fc = math.floor(n * (span * cell))  # ifloor(iv(3) * wv(2)), wv(2) = span * cell
    fd = 0.0  # wv(3) = 0: no diameter criterion
    nvmax = max(200, n)
    verts, a, xi, lo, hi, cells = _build_kd_tree(x, fc, fd, nvmax)
    psi = list(range(n))
    vval = np.empty((verts.size, 2))
    for i, q in enumerate(verts):
        vval[i] = _vertex_fit(float(q), x, y, rw, nf, span, k, psi)
    return LoessFit(
        x_range=(float(x.min()), float(x.max())),
        vertices=verts,
        vval=vval,
        a=a,
        xi=xi,
        lo=lo,
        hi=hi,
        cells=cells,
        span=span,
        degree=degree,
        nf=nf,
        fc=fc,
    )


def loess_predict(
    x, y, newx, span: float = 0.75, degree: int = 2, weights=None, cell: float = 0.2
) -> np.ndarray:
    """``predict(loess(y ~ x, span = span, degree = degree), newx)``; ``NaN`` outside ``range(x)``."""
    return fit_loess(
        x, y, span=span, degree=degree, weights=weights, cell=cell
    ).predict(newx)
