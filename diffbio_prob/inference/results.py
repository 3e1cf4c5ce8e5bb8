"""`FitResult`: what every fit returns, and its conversion to ArviZ 1.x.

A result holds draws as ``{site: array (chain, draw, *shape)}`` (a gradient or EM fit holds one draw of one
chain: a point estimate), the pointwise log-likelihood of each observed site in the same layout, sampler
statistics, the optimiser's loss history and the wall time. ``to_arviz()`` gives an ``xarray.DataTree`` with
``posterior``, ``log_likelihood`` and ``sample_stats`` groups, so ``az.summary``, ``az.loo`` and the ArviZ plots
work on it; ``save``/``load`` round-trip it through netCDF exactly.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["FitResult"]

_POINT_METHODS = ("gradient", "em", "map")


def _as_numpy(tree: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in (tree or {}).items()}


@dataclasses.dataclass
class FitResult:
    """The outcome of ``fit_gradient``, ``fit_svi``, ``fit_nuts`` or an EM fit.

    Attributes:
        method: ``"gradient"``, ``"svi"``, ``"nuts"``, ``"em"`` (or another name for custom fits).
        samples: ``{site: (chain, draw, *shape)}`` posterior draws (point fits: one chain, one draw).
        log_likelihood: ``{observed site: (chain, draw, *obs_shape)}`` pointwise log-likelihood.
        sample_stats: ``{name: (chain, draw)}`` sampler statistics, e.g. ``diverging``.
        params: point estimate ``{site: array}`` (posterior mean for samplers, the fitted values otherwise).
        loss_history: per-step loss of an optimiser (negative log-likelihood or negative ELBO).
        elapsed_s: wall time of the fit, compilation included.
        extra: anything else a fit wants to keep (not saved to netCDF).
    """

    method: str
    samples: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    log_likelihood: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    sample_stats: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    params: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    loss_history: np.ndarray | None = None
    elapsed_s: float = float("nan")
    extra: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.samples = _as_numpy(self.samples)
        self.log_likelihood = _as_numpy(self.log_likelihood)
        self.sample_stats = _as_numpy(self.sample_stats)
        self.params = _as_numpy(self.params)
        if self.loss_history is not None:
            self.loss_history = np.asarray(self.loss_history)
        if not self.samples and self.params:
            # A point fit is stored as one draw of one chain, so it converts and saves like a posterior.
            self.samples = {k: v[None, None] for k, v in self.params.items()}

    # ----------------------------------------------------------------------------------------- views
    @property
    def num_chains(self) -> int:
        return next(iter(self.samples.values())).shape[0] if self.samples else 0

    @property
    def num_draws(self) -> int:
        return next(iter(self.samples.values())).shape[1] if self.samples else 0

    @property
    def num_divergences(self) -> int:
        """Divergent transitions after warm-up (0 for fits that have none)."""
        div = self.sample_stats.get("diverging")
        return int(np.sum(div)) if div is not None else 0

    def posterior_mean(self) -> dict[str, np.ndarray]:
        """Mean over chains and draws of every site."""
        return {k: v.mean(axis=(0, 1)) for k, v in self.samples.items()}

    def flat_samples(self) -> dict[str, np.ndarray]:
        """Draws with the chain and draw axes merged: ``(chain * draw, *shape)``."""
        return {k: v.reshape((-1,) + v.shape[2:]) for k, v in self.samples.items()}

    # ---------------------------------------------------------------------------------------- ArviZ
    def to_arviz(self, coords: Mapping[str, Any] | None = None, dims: Mapping[str, list[str]] | None = None):
        """The result as an ArviZ 1.x ``xarray.DataTree``.

        Groups: ``posterior`` (every site), ``log_likelihood`` (when recorded; ``az.loo`` uses it),
        ``sample_stats`` (``diverging`` and friends) and ``loss_history`` (optimiser fits). Root attributes
        record the method and the wall time.

        Example:
            >>> dt = result.to_arviz()            # doctest: +SKIP
            >>> az.summary(dt)                     # doctest: +SKIP
        """
        import arviz as az
        import xarray as xr

        data: dict[str, dict[str, np.ndarray]] = {"posterior": self.samples}
        if self.log_likelihood:
            data["log_likelihood"] = self.log_likelihood
        if self.sample_stats:
            data["sample_stats"] = self.sample_stats
        dt = az.from_dict(data, coords=dict(coords or {}), dims=dict(dims or {}))
        if self.loss_history is not None:
            dt["loss_history"] = xr.DataTree(xr.Dataset({"loss": ("step", self.loss_history)}))
        dt.attrs.update(
            {
                "inference_method": self.method,
                "elapsed_s": float(self.elapsed_s),
                "point_estimate": int(self.method in _POINT_METHODS),
                "num_divergences": self.num_divergences,
            }
        )
        return dt

    def summary(self, var_names: list[str] | None = None, hdi_prob: float = 0.94):
        """ArviZ summary table: mean, sd, HDI bounds, ESS (bulk, tail), R-hat, MCSE.

        For a point fit (gradient, EM) only the estimate is meaningful: the table has a ``mean`` column.
        """
        import arviz as az
        import pandas as pd

        if self.method in _POINT_METHODS or self.num_draws < 4:
            rows = {}
            for name, value in self.samples.items():
                if var_names is not None and name not in var_names:
                    continue
                flat = value[0, 0].reshape(-1)
                if value[0, 0].ndim == 0:
                    rows[name] = float(flat[0])
                else:
                    for idx, v in zip(np.ndindex(value[0, 0].shape), flat):
                        rows[f"{name}[{', '.join(map(str, idx))}]"] = float(v)
            return pd.DataFrame({"mean": pd.Series(rows)})
        return az.summary(
            self.to_arviz(),
            var_names=var_names,
            ci_kind="hdi",
            ci_prob=hdi_prob,
            round_to="none",
        )

    def print_summary(self, var_names: list[str] | None = None, hdi_prob: float = 0.94, file=None) -> None:
        """Print the summary table followed by the divergence count and the wall time."""
        import pandas as pd

        with pd.option_context("display.max_rows", 200, "display.width", 160, "display.precision", 4):
            print(self.summary(var_names, hdi_prob), file=file)
        print(
            f"method={self.method}  chains={self.num_chains}  draws={self.num_draws}  "
            f"divergences={self.num_divergences}  time={self.elapsed_s:.2f}s",
            file=file,
        )

    # ----------------------------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write the ArviZ DataTree to netCDF atomically; ``FitResult.load`` or ``az.from_netcdf`` reopen it."""
        from diffbio_prob.io.atomic import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            self.to_arviz().to_netcdf(tmp, engine="h5netcdf")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FitResult":
        """Reopen a result written by ``save`` (exact round trip of draws, log-likelihood and statistics).

        Raises:
            FileNotFoundError: ``path`` does not exist.
            IsADirectoryError: ``path`` is a directory.
            ValueError: ``path`` is not a readable netCDF file (corrupt, truncated, another format); the
                message names the file and the reader's error.
        """
        import arviz as az

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"FitResult.load: {path}: no such file")
        if path.is_dir():
            raise IsADirectoryError(f"FitResult.load: {path} is a directory, not a netCDF file")
        try:
            dt = az.from_netcdf(path)
            result = cls.from_arviz(dt)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            # h5py/xarray report a bad file without naming it ("Unable to synchronously open file", "did
            # not find a match in any of xarray's currently installed IO backends", ...)
            raise ValueError(f"FitResult.load: cannot read {path} as a netCDF file written by FitResult.save "
                             f"(corrupt or truncated?): {type(exc).__name__}: {exc}") from exc
        return result

    @classmethod
    def from_arviz(cls, dt) -> "FitResult":
        """Build a result from an ArviZ DataTree (e.g. one made by ``az.from_numpyro``)."""

        def group(name):
            if name not in dt.children:
                return {}
            ds = dt[name].to_dataset()
            return {k: ds[k].values for k in ds.data_vars}

        method = str(dt.attrs.get("inference_method", "unknown"))
        samples = group("posterior")
        loss = group("loss_history").get("loss")
        result = cls(
            method=method,
            samples=samples,
            log_likelihood=group("log_likelihood"),
            sample_stats=group("sample_stats"),
            loss_history=loss,
            elapsed_s=float(dt.attrs.get("elapsed_s", float("nan"))),
        )
        result.params = (
            {k: v[0, 0] for k, v in samples.items()} if method in _POINT_METHODS else result.posterior_mean()
        )
        return result
