"""Design formulas, model matrices with DESeq2's column names, and contrasts.

``"~ group + condition"`` becomes a model matrix through formulaic (R's treatment coding; string
and boolean variables become factors with levels sorted as R's ``factor()`` sorts them, unless
they are already pandas Categoricals, whose category order sets the reference level). Columns are
named as DESeq2 names them: ``Intercept``, ``condition_B_vs_A`` for a level of a factor with an
intercept, the variable's name for a numeric covariate.

A contrast is a ``[factor, numerator, denominator]`` triple, a coefficient name, or a numeric
vector over the coefficients (DESeq2 ``results(contrast=, name=)``).

Example:
    >>> import pandas as pd
    >>> meta = pd.DataFrame({"condition": ["A", "B", "A", "B"]}, index=list("abcd"))
    >>> d = build_design("~ condition", meta)
    >>> d.names
    ['Intercept', 'condition_B_vs_A']
    >>> resolve_contrast(["condition", "B", "A"], d).vector.tolist()
    [0.0, 1.0]
"""

from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["Design", "Contrast", "build_design", "resolve_contrast"]

_PIECE = re.compile(r"^(?P<var>.+?)\[(?P<treat>T\.)?(?P<level>.*)\]$")


@dataclasses.dataclass(frozen=True)
class Design:
    """A model matrix with its provenance.

    Attributes:
        formula: the formula string.
        matrix: ``(N, P)`` float64 model matrix (samples in the metadata's order).
        names: DESeq2-style column names.
        raw_names: formulaic's column names.
        factors: ``{variable: levels}`` for the factor variables of the formula (first = reference).
        variables: all variables of the formula, in order of appearance.
        has_intercept: whether the matrix has an intercept column.
        data: the metadata columns used (factors converted to Categoricals).
    """

    formula: str
    matrix: np.ndarray
    names: list
    raw_names: list
    factors: dict
    variables: list
    has_intercept: bool
    data: pd.DataFrame

    @property
    def n_coef(self) -> int:
        return self.matrix.shape[1]


@dataclasses.dataclass(frozen=True)
class Contrast:
    """A resolved contrast: a numeric vector over the coefficients plus what it came from."""

    vector: np.ndarray
    label: str
    factor: str | None = None
    levels: tuple = ()
    coefficient: int | None = None  # index when the contrast is a single coefficient (sign +1)


def _r_make_name(s: str) -> str:
    # R's make.names for the characters that occur in model-matrix names.
    out = re.sub(r"[^0-9A-Za-z._]", ".", s)
    if not re.match(r"^[A-Za-z.]", out) or re.match(r"^\.[0-9]", out):
        out = "X" + out
    return out


def _plain(exc: BaseException) -> str:
    """An exception's message on one line without terminal colour codes (formulaic marks the error spot)."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).replace("\u29db", "").replace("\u29da", "")
    return " ".join(text.split())


def build_design(formula: str, metadata: pd.DataFrame) -> Design:
    """Model matrix for ``formula`` on ``metadata`` (rows = samples), checked for full rank.

    Raises:
        ValueError: malformed formula, unknown variable, missing values, a factor with a single
            level, or a matrix that is not of full column rank (DESeq2's ``checkFullRank``).
        TypeError: ``formula`` is not a string or ``metadata`` not a DataFrame.
    """
    from formulaic import Formula, model_matrix
    from formulaic.errors import FormulaicError

    if not isinstance(formula, str):
        raise TypeError(f"design: expected a formula string such as '~ condition', got {type(formula).__name__}")
    if not isinstance(metadata, pd.DataFrame):
        raise TypeError(f"metadata: expected a pandas DataFrame, got {type(metadata).__name__}")
    text = formula.strip()
    if not text.startswith("~"):
        raise ValueError(f"design: expected a one-sided formula starting with '~', got {formula!r}")
    try:
        parsed = Formula(text)
        variables = []
        for term in parsed:
            for factor in term.factors:
                name = str(factor)
                if name not in ("1", "0") and name not in variables:
                    variables.append(name)
    except (FormulaicError, SyntaxError, ValueError, TypeError) as exc:
        raise ValueError(f"design: cannot parse {formula!r}: {_plain(exc)}") from None
    missing = [v for v in variables if v not in metadata.columns]
    if missing:
        cols = [str(c) for c in metadata.columns]
        shown = cols if len(cols) <= 8 else cols[:8] + [f"... {len(cols) - 8} more"]
        raise ValueError(
            f"design: variable(s) {missing} of {formula!r} are not columns of the metadata (columns: {shown})"
        )
    data = pd.DataFrame(index=metadata.index)
    factors: dict = {}
    for v in variables:
        col = metadata[v]
        if col.isna().any():
            raise ValueError(f"design: variable {v!r} has missing values (DESeq2 allows none)")
        if isinstance(col.dtype, pd.CategoricalDtype):
            col = col.cat.remove_unused_categories()
            levels = [str(c) for c in col.cat.categories]
            col = pd.Categorical(col.astype(str), categories=levels)
        elif pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            levels = sorted(col.astype(str).unique())
            col = pd.Categorical(col.astype(str), categories=levels)
        else:
            values = col.astype(float).to_numpy()
            if not np.isfinite(values).all():
                bad = values[~np.isfinite(values)][0]
                raise ValueError(f"design: numeric variable {v!r} has a non-finite value ({bad}); expected finite numbers")
            data[v] = values
            continue
        if len(levels) < 2:
            raise ValueError(f"design: factor {v!r} has a single level {levels}; it cannot be estimated")
        factors[v] = levels
        data[v] = col
    try:
        mm = model_matrix(text, data, ensure_full_rank=True, na_action="raise")
    except Exception as exc:  # formulaic raises several types for bad formulas
        raise ValueError(f"design: cannot build a model matrix from {formula!r}: {_plain(exc)}") from None
    raw_names = [str(c) for c in mm.columns]
    matrix = np.asarray(mm, dtype=float)
    if matrix.shape[1] == 0:
        raise ValueError(f"design: {formula!r} gives an empty model matrix")
    if np.linalg.matrix_rank(matrix) < matrix.shape[1]:
        raise ValueError(
            f"design: the model matrix of {formula!r} is not of full rank (a variable is a linear combination "
            "of others, or a combination of levels has no samples)"
        )
    has_intercept = "Intercept" in raw_names
    names = []
    for raw in raw_names:
        if raw == "Intercept":
            names.append("Intercept")
            continue
        pieces = raw.split(":")
        parsed_pieces = [_PIECE.match(p) for p in pieces]
        if len(pieces) == 1 and parsed_pieces[0] and parsed_pieces[0]["treat"] and parsed_pieces[0]["var"] in factors:
            var, lvl = parsed_pieces[0]["var"], parsed_pieces[0]["level"]
            names.append(_r_make_name(f"{var}_{lvl}_vs_{factors[var][0]}"))
        else:
            parts = []
            for p, m in zip(pieces, parsed_pieces):
                parts.append(f"{m['var']}{m['level']}" if m else p)
            names.append(_r_make_name(":".join(parts)))
    return Design(
        formula=text,
        matrix=matrix,
        names=names,
        raw_names=raw_names,
        factors=factors,
        variables=variables,
        has_intercept=has_intercept,
        data=data,
    )


def resolve_contrast(contrast, design: Design) -> Contrast:
    """Turn a user contrast into a numeric vector over ``design``'s coefficients.

    Args:
        contrast: ``None`` (DESeq2's default: the last coefficient), a coefficient name, a
            ``[factor, numerator, denominator]`` sequence of strings, or a numeric vector of length
            ``P``.
        design: the fitted :class:`Design`.

    Raises:
        ValueError / TypeError naming what is wrong (unknown factor or level, equal levels, wrong
        length, all-zero vector).
    """
    p = design.n_coef
    names = design.names
    if contrast is None:
        k = p - 1
        return Contrast(vector=np.eye(p)[k], label=names[k], coefficient=k)
    if isinstance(contrast, str):
        if contrast not in names:
            raise ValueError(f"contrast: {contrast!r} is not a coefficient; coefficients are {names}")
        k = names.index(contrast)
        return Contrast(vector=np.eye(p)[k], label=contrast, coefficient=k)
    values = list(contrast) if isinstance(contrast, (Sequence, np.ndarray, pd.Series)) else None
    if values is None:
        raise TypeError(
            f"contrast: expected [factor, numerator, denominator], a coefficient name or a numeric vector, "
            f"got {type(contrast).__name__}"
        )
    if values and all(isinstance(v, str) for v in values):
        if len(values) != 3:
            raise ValueError(
                f"contrast: a character contrast needs 3 elements [factor, numerator, denominator], got {values}"
            )
        factor, num, den = values
        if factor not in design.data.columns:
            raise ValueError(f"contrast: {factor!r} is not a variable of the design {design.formula!r}")
        if factor not in design.factors:
            raise ValueError(f"contrast: {factor!r} is numeric, not a factor; use its coefficient name instead")
        levels = design.factors[factor]
        for lvl in (num, den):
            if lvl not in levels:
                raise ValueError(f"contrast: {lvl!r} is not a level of {factor!r} (levels: {levels})")
        if num == den:
            raise ValueError(f"contrast: numerator and denominator are both {num!r}")
        ref = levels[0]
        vec = np.zeros(p)
        treat = {lvl: _r_make_name(f"{factor}_{lvl}_vs_{ref}") for lvl in levels[1:]}
        full = {lvl: _r_make_name(f"{factor}{lvl}") for lvl in levels}
        label = f"{factor} {num} vs {den}"
        if all(treat[lvl] in names for lvl in levels[1:]):
            coef = None
            if den == ref:
                vec[names.index(treat[num])] = 1.0
                coef = names.index(treat[num])
            elif num == ref:
                vec[names.index(treat[den])] = -1.0
            else:
                vec[names.index(treat[num])] = 1.0
                vec[names.index(treat[den])] = -1.0
            return Contrast(vector=vec, label=label, factor=factor, levels=(num, den), coefficient=coef)
        if full[num] in names and full[den] in names:
            vec[names.index(full[num])] = 1.0
            vec[names.index(full[den])] = -1.0
            return Contrast(vector=vec, label=label, factor=factor, levels=(num, den))
        raise ValueError(
            f"contrast: the coefficients of {factor!r} are not main-effect columns of {design.formula!r} "
            f"(coefficients: {names}); give a numeric contrast vector instead"
        )
    try:
        vec = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"contrast: expected strings or numbers, got {values!r}") from None
    if vec.shape != (p,):
        raise ValueError(f"contrast: a numeric contrast needs {p} values (one per coefficient {names}), got {vec.size}")
    if not np.all(np.isfinite(vec)):
        raise ValueError("contrast: the numeric contrast has non-finite values")
    if np.all(vec == 0):
        raise ValueError("contrast: the numeric contrast is all zeros")
    nz = np.flatnonzero(vec)
    coef = int(nz[0]) if nz.size == 1 and vec[nz[0]] == 1.0 else None
    label = ",".join(f"{v:+g}" for v in vec)
    return Contrast(vector=vec, label=label, coefficient=coef)
