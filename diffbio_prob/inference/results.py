"""`FitResult`: what every fit returns, and its conversion to ArviZ 1.x.

A result holds draws as ``{site: array (chain, draw, *shape)}`` (a gradient or EM fit holds one draw of one
chain: a point estimate), the pointwise log-likelihood of each observed site in the same layout, sampler
statistics, posterior predictive and prior draws, the observed values and the model's other array arguments,
named dimensions, the optimiser's loss history and the wall time. ``to_arviz()`` gives the
``xarray.DataTree`` ``az.from_numpyro`` gives (the same groups, variables and statistics' names), so
``az.summary``, ``az.loo``, ``az.loo_pit``, ``az.plot_ppc_dist`` and ``az.plot_prior_posterior`` work on it;
``save``/``load`` round-trip it through netCDF exactly.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["FitResult"]

_POINT_METHODS = ("gradient", "em", "map")
_SAMPLE_DIMS = ("chain", "draw")
#: The groups of ``to_arviz()`` (``az.from_numpyro``'s names), each an attribute of the result.
GROUPS = ("posterior", "sample_stats", "log_likelihood", "posterior_predictive", "prior", "prior_predictive",
          "observed_data", "constant_data")
_ATTRS = {"posterior": "samples"}


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
        posterior_predictive: ``{observed site: (chain, draw, *obs_shape)}``, one draw per posterior draw.
        prior, prior_predictive: ``{site: (1, draw, *shape)}`` prior draws of the latent (and deterministic)
            and of the observed sites.
        observed_data: ``{observed site: values}``; constant_data: ``{argument: values}`` (the model's other
            array arguments).
        dims: ``{variable: [dimension names]}`` (sample dimensions excluded); coords: ``{dimension: values}``.
    """

    method: str
    samples: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    log_likelihood: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    sample_stats: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    params: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    loss_history: np.ndarray | None = None
    elapsed_s: float = float("nan")
    extra: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    posterior_predictive: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)
    prior: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)
    prior_predictive: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)
    observed_data: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)
    constant_data: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)
    dims: dict[str, list[str]] = dataclasses.field(default_factory=dict, repr=False)
    coords: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.samples = _as_numpy(self.samples)
        self.log_likelihood = _as_numpy(self.log_likelihood)
        self.sample_stats = _as_numpy(self.sample_stats)
        self.params = _as_numpy(self.params)
        for group in ("posterior_predictive", "prior", "prior_predictive", "observed_data", "constant_data"):
            setattr(self, group, _as_numpy(getattr(self, group)))
        self.dims = {k: list(v) for k, v in (self.dims or {}).items()}
        self.coords = dict(self.coords or {})
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
        """The result as an ArviZ 1.x ``xarray.DataTree``, in ``az.from_numpyro``'s layout.

        Groups, where recorded: ``posterior``, ``sample_stats`` (NUTS: ``lp``, ``acceptance_rate``,
        ``step_size``, ``n_steps``, ``tree_depth``, ``diverging``, ``energy``; SVI: ``log_p``, ``log_q``),
        ``log_likelihood`` (``az.loo``), ``posterior_predictive``, ``prior``, ``prior_predictive``,
        ``observed_data``, ``constant_data``, and ``loss_history`` for optimiser fits. Root attributes record
        the method and the wall time.

        ``dims`` and ``coords`` name dimensions over the result's own (``self.dims``, ``self.coords``). A
        variable with fewer axes than names (an HMM's single sequence under ``["sequence", "step"]``) drops
        the leading names, a pointwise log-likelihood the trailing ones (its event axes, as
        ``az.from_numpyro`` does).

        Example:
            >>> dt = result.to_arviz(coords={"gene": gene_names})   # doctest: +SKIP
            >>> az.summary(dt)                                       # doctest: +SKIP
        """
        import arviz as az
        import xarray as xr

        table = {**self.dims, **{k: list(v) for k, v in (dims or {}).items()}}
        names = {**self.coords, **dict(coords or {})}
        groups = {}
        for group in GROUPS:
            data = getattr(self, _ATTRS.get(group, group))
            if not data:
                continue
            lead = 0 if group.endswith("_data") else len(_SAMPLE_DIMS)
            group_dims = {k: _fit_dims(table[k], np.ndim(v) - lead, group == "log_likelihood")
                          for k, v in data.items() if k in table}
            used = {d for v in group_dims.values() for d in v}
            part = az.from_dict({group: dict(data)}, coords={d: c for d, c in names.items() if d in used},
                                dims=group_dims)
            groups[group] = part[group].to_dataset()
        if self.loss_history is not None:
            groups["loss_history"] = xr.Dataset({"loss": ("step", self.loss_history)})
        dt = xr.DataTree.from_dict(groups)
        dt.attrs.update(
            {
                "inference_method": self.method,
                "elapsed_s": float(self.elapsed_s),
                "point_estimate": int(self.method in _POINT_METHODS),
                "num_divergences": self.num_divergences,
            }
        )
        return dt

    def loo(self, var_name: str | None = None, pointwise: bool | None = None):
        """PSIS-LOO of the fit: ``az.loo_approximate_posterior`` for an SVI fit (corrected by ``log_p`` and
        ``log_q``, Magnusson et al. 2019), ``az.loo`` otherwise."""
        import arviz as az

        if self.method in _POINT_METHODS or (self.method == "svi" and "log_q" not in self.sample_stats):
            raise ValueError(f"loo: a {self.method} fit without a posterior density (a point estimate or an AutoDelta "
                             "guide) has no draws to leave one out with; fit by NUTS or a guide with a density")
        dt = self.to_arviz()
        if {"log_p", "log_q"} <= set(self.sample_stats):
            stats = dt["sample_stats"]
            return az.loo_approximate_posterior(dt, stats["log_p"], stats["log_q"], pointwise=pointwise,
                                                var_name=var_name)
        return az.loo(dt, var_name=var_name, pointwise=pointwise)

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
        dims: dict[str, list[str]] = {}
        coords: dict[str, Any] = {}

        def group(name):
            if name not in dt.children:
                return {}
            ds = dt[name].to_dataset()
            for var in ds.data_vars:
                named = [d for d in ds[var].dims if d not in _SAMPLE_DIMS]
                if len(named) >= len(dims.get(var, [])):  # the fullest shape (observed, not pointwise)
                    dims[var] = named
            coords.update({d: ds[d].values.tolist() for d in ds.dims if d not in _SAMPLE_DIMS and d in ds.coords})
            return {k: ds[k].values for k in ds.data_vars}

        method = str(dt.attrs.get("inference_method", "unknown"))
        data = {g: group(g) for g in GROUPS}
        loss = group("loss_history").get("loss")
        dims.pop("loss", None)
        coords.pop("step", None)
        result = cls(
            method=method,
            samples=data["posterior"],
            log_likelihood=data["log_likelihood"],
            sample_stats=data["sample_stats"],
            loss_history=loss,
            elapsed_s=float(dt.attrs.get("elapsed_s", float("nan"))),
            posterior_predictive=data["posterior_predictive"],
            prior=data["prior"],
            prior_predictive=data["prior_predictive"],
            observed_data=data["observed_data"],
            constant_data=data["constant_data"],
            dims=dims,
            coords=coords,
        )
        samples = result.samples
        result.params = (
            {k: v[0, 0] for k, v in samples.items()} if method in _POINT_METHODS else result.posterior_mean()
        )
        return result


def _fit_dims(names: list[str], ndim: int, pointwise: bool) -> list[str]:
    """``names`` cut to a variable's ``ndim`` axes: a pointwise log-likelihood lacks the trailing (event)
    axes, any other variable a leading (batch) axis."""
    names = list(names)
    if len(names) <= ndim:
        return names
    return names[:ndim] if pointwise else names[len(names) - ndim:]
