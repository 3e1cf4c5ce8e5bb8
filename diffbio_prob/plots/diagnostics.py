"""MCMC/SVI diagnostics figures drawn with ArviZ 1.x (arviz-plots), returned as matplotlib Figures: traces,
marginal posteriors and posterior (or prior) predictive checks (``ppc_plot`` through ArviZ;
``ppc_interval_plot`` drawn here: the observed value of each statistic against its predictive interval).

ArviZ 1.x plot functions return a ``PlotCollection``; its figure is ``pc.viz["figure"].item()``. Both
functions here accept an ``xarray.DataTree`` (``az.from_numpyro``/``az.from_dict``), any object with a
``to_arviz()`` method (our ``FitResult``), or a plain ``{name: (chain, draw, ...)}`` dict of draws.

Variables with many elements (a coefficient per gene, an abundance per transcript) are cut to their
first ``max_elements`` entries along each non-sample dimension, and the figure title says so; pass
``coords`` to choose which entries to show instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["trace_plot", "posterior_plot", "ppc_plot", "ppc_intervals", "ppc_interval_plot"]

_SAMPLE_DIMS = ("chain", "draw")
_STYLE = "arviz-variat"


def _as_datatree(data):
    """DataTree, ``FitResult``-like (``to_arviz()``) or dict of draws -> DataTree with a posterior group."""
    import arviz as az
    import xarray as xr

    if hasattr(data, "to_arviz") and callable(data.to_arviz):
        data = data.to_arviz()
    if isinstance(data, xr.DataTree):  # checked first: a DataTree is also a Mapping
        pass
    elif isinstance(data, xr.Dataset):  # a posterior group on its own
        data = xr.DataTree.from_dict({"posterior": data})
    elif isinstance(data, Mapping):
        if not data:
            raise ValueError("data: expected draws, got an empty dict")
        if "posterior" in data:
            data = az.from_dict(dict(data))
        else:  # a bare {variable: (chain, draw, ...)} mapping of posterior draws
            for name, value in data.items():
                if np.ndim(value) < 2:
                    raise ValueError(
                        f"data[{name!r}]: expected draws shaped (chain, draw, ...), "
                        f"got shape {np.shape(value)}"
                    )
            data = az.from_dict({"posterior": {k: np.asarray(v) for k, v in data.items()}})
    if not isinstance(data, xr.DataTree):
        raise TypeError(
            "data: expected an xarray.DataTree, an object with to_arviz() (e.g. a FitResult) or a dict of "
            f"draws, got {type(data).__name__}"
        )
    if "posterior" not in data.children:
        raise ValueError(f"data: the DataTree has no 'posterior' group (groups: {sorted(data.children)})")
    return data


def _select(dt, var_names, coords, max_elements: int):
    """Return (DataTree restricted to var_names/coords/max_elements, note about what was cut or None)."""
    import xarray as xr

    post = dt["posterior"].to_dataset()
    available = list(post.data_vars)
    if not available:
        raise ValueError("data: the posterior group has no variables")
    if var_names is None:
        var_names = available
    elif isinstance(var_names, str):
        var_names = [var_names]
    elif not isinstance(var_names, Sequence) or not all(isinstance(v, str) for v in var_names):
        raise TypeError(f"var_names: expected a name or a list of names, got {var_names!r}")
    var_names = list(var_names)
    if not var_names:
        raise ValueError("var_names: expected at least one variable name, got an empty list")
    missing = [v for v in var_names if v not in post.data_vars]
    if missing:
        raise ValueError(f"var_names: {missing} not in the posterior (available: {available})")
    if isinstance(max_elements, bool) or not isinstance(max_elements, (int, np.integer)) or max_elements < 1:
        raise ValueError(f"max_elements: expected a positive integer, got {max_elements!r}")
    for dim in _SAMPLE_DIMS:
        if dim not in post.dims:
            raise ValueError(f"data: the posterior has no {dim!r} dimension (dims: {list(post.dims)})")
    ds = post[var_names]
    for name in var_names:
        values = np.asarray(ds[name].values)
        if not np.issubdtype(values.dtype, np.number) and values.dtype != np.bool_:
            raise TypeError(f"data: posterior variable {name!r} has non-numeric dtype {values.dtype}")
        if not np.isfinite(values).any():
            raise ValueError(f"data: posterior variable {name!r} has no finite draws")
    if coords:
        if not isinstance(coords, Mapping):
            raise TypeError(f"coords: expected a dict {{dim: values}}, got {type(coords).__name__}")
        bad = [d for d in coords if d not in ds.dims]
        if bad:
            raise ValueError(
                f"coords: dimensions {bad} not in the selected variables (dims: {list(ds.dims)})"
            )
        ds = ds.sel(dict(coords))
    cut = {dim: size for dim, size in ds.sizes.items() if dim not in _SAMPLE_DIMS and size > max_elements}
    note = None
    if cut:
        ds = ds.isel({dim: slice(0, max_elements) for dim in cut})
        note = "showing the first {} of {}".format(
            max_elements, ", ".join(f"{size} along {dim}" for dim, size in cut.items())
        )
    groups = {"posterior": ds}
    if "sample_stats" in dt.children:
        groups["sample_stats"] = dt["sample_stats"].to_dataset()
    selection = (dict(coords) if coords else {}, {dim: slice(0, max_elements) for dim in cut})
    return xr.DataTree.from_dict(groups), note, selection


def _n_elements(dt) -> int:
    post = dt["posterior"].to_dataset()
    return int(
        sum(np.prod([s for d, s in post[v].sizes.items() if d not in _SAMPLE_DIMS]) for v in post.data_vars)
    )


def _style_context():
    import matplotlib.pyplot as plt
    import matplotlib.style

    # arviz-plots registers its matplotlib styles on import; fall back to matplotlib's default if absent.
    style = _STYLE if _STYLE in plt.style.available else "default"
    return matplotlib.style.context(style)


def _figure(pc, note: str | None, title: str | None):
    import matplotlib.pyplot as plt

    fig = pc.viz["figure"].item()
    # ArviZ draws through pyplot; detach the figure so long workflows do not pile up open figures.
    plt.close(fig)
    text = " — ".join(t for t in (title, note) if t)
    if text:
        fig.suptitle(text)
    return fig


def trace_plot(data, var_names=None, *, coords=None, max_elements: int = 8, title: str | None = None):
    """Trace and marginal density of each variable, chains overlaid, divergences marked.

    Wraps ``arviz.plot_trace_dist`` (ArviZ 1.x); divergent draws from ``sample_stats.diverging`` are
    marked on both columns.

    Args:
        data: an ``xarray.DataTree`` with a ``posterior`` group, an object with ``to_arviz()`` (a
            ``FitResult``), a posterior ``xarray.Dataset``, or a ``{name: array (chain, draw, ...)}``
            dict of posterior draws.
        var_names: a variable name or list of names (default: all posterior variables).
        coords: optional ``{dim: values}`` selection, e.g. ``{"gene": ["g1", "g2"]}``.
        max_elements: at most this many entries per non-sample dimension are drawn (the title says so).
        title: optional figure title.

    Returns:
        matplotlib Figure.

    Example:
        >>> import numpy as np
        >>> fig = trace_plot({"mu": np.random.default_rng(0).normal(size=(2, 50))})
        >>> len(fig.axes) >= 2
        True
    """
    import arviz as az

    dt, note, _ = _select(_as_datatree(data), var_names, coords, max_elements)
    with _style_context(), _no_interactive():
        pc = az.plot_trace_dist(dt, backend="matplotlib", compact=True)
    return _figure(pc, note, title)


def posterior_plot(
    data,
    var_names=None,
    *,
    kind: str = "auto",
    ci_prob: float = 0.94,
    ref_values: Mapping | None = None,
    coords=None,
    max_elements: int = 8,
    title: str | None = None,
):
    """Marginal posteriors with mean and HDI: densities (``kind="dist"``) or a forest (``"forest"``).

    ``kind="auto"`` draws densities for up to 6 scalar elements and a forest beyond. Reference values
    (e.g. the true parameters of simulated data) are drawn in red: vertical lines on densities, crosses
    on the forest.

    Args:
        data: DataTree, ``FitResult``-like or dict of draws (see :func:`trace_plot`).
        var_names: a variable name or list of names (default: all posterior variables).
        kind: "auto", "dist" or "forest".
        ci_prob: HDI probability (the forest also draws the 50% HDI).
        ref_values: ``{name: value}`` with a scalar or an array shaped like one draw of the variable.
        coords: optional ``{dim: values}`` selection.
        max_elements: at most this many entries per non-sample dimension are drawn.
        title: optional figure title.

    Returns:
        matplotlib Figure.

    Example:
        >>> import numpy as np
        >>> draws = {"theta": np.random.default_rng(0).normal(size=(2, 50, 3))}
        >>> fig = posterior_plot(draws, kind="forest", ref_values={"theta": [0.0, 0.5, -0.5]})
    """
    import arviz as az
    import arviz_plots as azp

    if kind not in ("auto", "dist", "forest"):
        raise ValueError(f"kind: expected 'auto', 'dist' or 'forest', got {kind!r}")
    if isinstance(ci_prob, bool) or not isinstance(ci_prob, (int, float)) or not 0 < ci_prob < 1:
        raise ValueError(f"ci_prob: expected a probability in (0, 1), got {ci_prob!r}")
    full = _as_datatree(data)
    dt, note, selection = _select(full, var_names, coords, max_elements)
    refs = _reference_dataset(full, dt, selection, ref_values) if ref_values is not None else None
    if kind == "auto":
        kind = "dist" if _n_elements(dt) <= 6 else "forest"
    with _style_context(), _no_interactive():
        if kind == "dist":
            pc = az.plot_dist(dt, backend="matplotlib", point_estimate="mean", ci_kind="hdi", ci_prob=ci_prob)
            if refs is not None:
                azp.add_lines(pc, values=refs, visuals={"ref_line": {"color": "#D55E00"}})
        else:
            probs = sorted({0.5, float(ci_prob)})
            pc = az.plot_forest(
                dt, backend="matplotlib", combined=True, ci_kind="hdi", ci_probs=probs, point_estimate="mean"
            )
            if refs is not None:
                _forest_references(pc, refs)
            _wrap_forest_headers(pc.viz["figure"].item())
    return _figure(pc, note, title)


def _no_interactive():
    import matplotlib.pyplot as plt

    return plt.ioff()


def _reference_dataset(full, dt, selection, ref_values):
    """Build a Dataset shaped like one draw of each plotted variable (what ``add_lines`` expects).

    A reference may be a scalar, shaped like one draw of the plotted (cut) variable, or shaped like one
    draw of the full variable, in which case it is cut by the same coords/max_elements selection.
    """
    import xarray as xr

    if not isinstance(ref_values, Mapping):
        raise TypeError(f"ref_values: expected a dict {{name: value}}, got {type(ref_values).__name__}")
    post = dt["posterior"].to_dataset()
    sel, isel = selection
    out = {}
    for name, value in ref_values.items():
        if name not in post.data_vars:
            raise ValueError(
                f"ref_values: {name!r} is not among the plotted variables {list(post.data_vars)}"
            )
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"ref_values[{name!r}]: expected numbers, got {value!r}") from exc
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"ref_values[{name!r}]: contains NaN or infinite values")
        one = post[name].isel({d: 0 for d in _SAMPLE_DIMS}, drop=True)
        whole = full["posterior"][name].isel({d: 0 for d in _SAMPLE_DIMS}, drop=True)
        if arr.ndim == 0 or arr.shape == one.shape:
            da = xr.DataArray(np.broadcast_to(arr, one.shape).copy(), dims=one.dims, coords=one.coords)
        elif arr.shape == whole.shape:
            da = xr.DataArray(arr, dims=whole.dims, coords=whole.coords)
            da = da.sel({d: v for d, v in sel.items() if d in da.dims})
            da = da.isel({d: v for d, v in isel.items() if d in da.dims})
        else:
            raise ValueError(
                f"ref_values[{name!r}]: expected a scalar or shape {one.shape} (one plotted draw) or "
                f"{whole.shape} (one full draw), got {arr.shape}"
            )
        out[name] = da
    return xr.Dataset(out)


def _wrap_forest_headers(fig) -> None:
    """Break the forest plot's label-column headers at underscores.

    ArviZ puts one narrow label column per dimension with the dimension's name as a tick label under
    it; names such as ``from_state`` and ``to_state`` side by side run into each other.
    """
    for ax in fig.axes:
        labels = [t.get_text() for t in ax.get_xticklabels()]
        if any("_" in t for t in labels):
            ax.set_xticks(ax.get_xticks(), labels=[t.replace("_", "\n") for t in labels])


def _forest_references(pc, refs) -> None:
    """Mark reference values on a forest plot at the rows of the matching point estimates."""
    point = pc.viz["point_estimate"]
    for name in refs.data_vars:
        artists = point[name]
        ref = refs[name].transpose(*artists.dims).values
        for idx in np.ndindex(artists.shape):
            artist = artists.values[idx]
            offsets = np.asarray(artist.get_offsets())
            value = float(ref[idx])
            artist.axes.scatter(
                [value], offsets[:, 1][:1], marker="x", color="#D55E00", s=40, zorder=5, linewidths=1.5
            )


def ppc_plot(data, var_name: str | None = None, *, group: str = "posterior_predictive", kind: str | None = None,
             num_samples: int = 50, title: str | None = None):
    """Posterior (or prior) predictive check: the observed values' distribution over that of ``num_samples``
    predictive draws, pooled over every observation of ``var_name`` (Gelman et al., BDA3 ch. 6).

    Wraps ``arviz.plot_ppc_dist`` (ArviZ 1.x).

    Args:
        data: an ``xarray.DataTree`` with ``observed_data`` and ``posterior_predictive`` (or
            ``prior_predictive``) groups, or an object with ``to_arviz()`` (a ``FitResult`` of ``fit_nuts``
            / ``fit_svi``, which records both).
        var_name: the observed variable (default: the only one).
        group: ``"posterior_predictive"`` or ``"prior_predictive"``.
        kind: ``"kde"``, ``"hist"``, ``"ecdf"`` (default: ArviZ's choice; ``"hist"`` for integer counts).
        num_samples: predictive draws drawn as lines.
        title: optional figure title.

    Returns:
        matplotlib Figure.

    Example:
        >>> fig = ppc_plot(fit_nuts(nb_glm_model, counts, design, sf), "counts")   # doctest: +SKIP
    """
    import arviz as az
    import xarray as xr

    if hasattr(data, "to_arviz") and callable(data.to_arviz):
        data = data.to_arviz()
    if not isinstance(data, xr.DataTree):
        raise TypeError(f"data: expected an xarray.DataTree or an object with to_arviz() (e.g. a FitResult), "
                        f"got {type(data).__name__}")
    if group not in ("posterior_predictive", "prior_predictive"):
        raise ValueError(f"group: expected 'posterior_predictive' or 'prior_predictive', got {group!r}")
    needed = [group] + (["observed_data"] if group == "posterior_predictive" else [])
    missing = [g for g in needed if g not in data.children]
    if missing:
        raise ValueError(f"data: no {' or '.join(repr(g) for g in missing)} group (groups: {sorted(data.children)}); "
                         "fit with posterior_predictive=True (prior_draws=N for the prior predictive)")
    available = list(data[group].to_dataset().data_vars)
    if var_name is None:
        if len(available) != 1:
            raise ValueError(f"var_name: the {group} group has {available}; name one")
        var_name = available[0]
    if not isinstance(var_name, str) or var_name not in available:
        raise ValueError(f"var_name: {var_name!r} not in the {group} group (available: {available})")
    if kind not in (None, "kde", "hist", "ecdf"):
        raise ValueError(f"kind: expected 'kde', 'hist', 'ecdf' or None, got {kind!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples: expected a positive integer, got {num_samples!r}")
    predictive = data[group].to_dataset()[var_name]
    if kind is None:
        kind = "hist" if np.issubdtype(predictive.dtype, np.integer) or np.all(np.mod(predictive.values, 1) == 0) else "kde"
    draws = int(np.prod([predictive.sizes[d] for d in _SAMPLE_DIMS if d in predictive.dims]))
    with _style_context(), _no_interactive():
        # ArviZ pools every non-sample dimension of the variable into one distribution: one panel
        pc = az.plot_ppc_dist(data, var_names=[var_name], group=group, kind=kind, num_samples=min(num_samples, draws),
                              backend="matplotlib")
    return _figure(pc, None, title)


_PPC_PROBS = (0.03, 0.25, 0.5, 0.75, 0.97)  # the central 94% and 50% intervals and the median


def _observed_and_predictive(data, var_name, group):
    """(observed, predictive draws flattened to (draw, *shape)) from a DataTree / FitResult / array pair."""
    import xarray as xr

    if isinstance(data, tuple):
        if len(data) != 2:
            raise ValueError(f"data: expected a pair (observed, predictive draws), got {len(data)} items")
        observed, predictive = (np.asarray(x) for x in data)
        if predictive.shape[1:] != observed.shape:
            raise ValueError(f"data: predictive draws shaped (draw, *{observed.shape}) expected, got "
                             f"{predictive.shape}")
        return observed, predictive
    if hasattr(data, "to_arviz") and callable(data.to_arviz):
        data = data.to_arviz()
    if not isinstance(data, xr.DataTree):
        raise TypeError("data: expected an xarray.DataTree, an object with to_arviz() (e.g. a FitResult) or a "
                        f"pair (observed, predictive draws), got {type(data).__name__}")
    missing = [g for g in (group, "observed_data") if g not in data.children]
    if missing:
        raise ValueError(f"data: no {' or '.join(repr(g) for g in missing)} group (groups: {sorted(data.children)})")
    available = list(data[group].to_dataset().data_vars)
    if var_name is None and len(available) == 1:
        var_name = available[0]
    if not isinstance(var_name, str) or var_name not in available:
        raise ValueError(f"var_name: {var_name!r} not in the {group} group (available: {available})")
    pred = data[group].to_dataset()[var_name]
    pred = pred.transpose(*[d for d in _SAMPLE_DIMS if d in pred.dims], ...)
    n_sample = sum(d in pred.dims for d in _SAMPLE_DIMS)
    values = np.asarray(pred.values)
    values = values.reshape((-1,) + values.shape[n_sample:])
    return np.asarray(data["observed_data"].to_dataset()[var_name].values), values


def ppc_intervals(data, var_name: str | None = None, statistic=None, *, labels=None,
                  group: str = "posterior_predictive", num_samples: int = 500):
    """The numbers of :func:`ppc_interval_plot`: each statistic's observed value and predictive quantiles.

    Args:
        data: an ``xarray.DataTree`` with ``observed_data`` and ``group``, an object with ``to_arviz()``,
            or a pair ``(observed, predictive)`` of arrays shaped ``(*shape)`` and ``(draw, *shape)``.
        var_name: the observed variable (default: the only one).
        statistic: ``f(x) -> (n, K)`` for ``x`` shaped ``(n, *shape)`` (a batch of data sets), e.g. the count
            of each symbol; default: every observation is its own statistic.
        labels: ``K`` names of the statistics (default ``0..K-1``).
        num_samples: predictive draws used (evenly thinned).

    Returns:
        ``pandas.DataFrame`` indexed by label: ``observed``, ``q03``, ``q25``, ``median``, ``q75``, ``q97`` and
        ``inside`` (the observed value lies in the central 94% predictive interval).

    Example:
        >>> import numpy as np
        >>> pred = np.random.default_rng(0).poisson(5.0, (400, 3))
        >>> ppc_intervals((np.array([5, 6, 30]), pred))["inside"].tolist()
        [True, True, False]
    """
    import pandas as pd

    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples: expected a positive integer, got {num_samples!r}")
    observed, predictive = _observed_and_predictive(data, var_name, group)
    if predictive.shape[0] > num_samples:
        predictive = predictive[np.linspace(0, predictive.shape[0] - 1, num_samples).round().astype(int)]
    if statistic is None:
        def statistic(x):
            return x.reshape(x.shape[0], -1)
    elif not callable(statistic):
        raise TypeError(f"statistic: expected a function of (n, *shape) data, got {type(statistic).__name__}")
    obs_stat = np.asarray(statistic(observed[None]), float)
    pred_stat = np.asarray(statistic(predictive), float)
    if obs_stat.ndim != 2 or obs_stat.shape[0] != 1 or pred_stat.shape != (predictive.shape[0], obs_stat.shape[1]):
        raise ValueError(f"statistic: expected (n, K) for n data sets, got {obs_stat.shape} for one and "
                         f"{pred_stat.shape} for {predictive.shape[0]}")
    k = obs_stat.shape[1]
    labels = [str(i) for i in range(k)] if labels is None else [str(label) for label in labels]
    if len(labels) != k:
        raise ValueError(f"labels: expected {k} labels (one per statistic), got {len(labels)}")
    q = np.quantile(pred_stat, _PPC_PROBS, axis=0)
    table = pd.DataFrame({"observed": obs_stat[0], "q03": q[0], "q25": q[1], "median": q[2], "q75": q[3],
                          "q97": q[4]}, index=pd.Index(labels, name="statistic"))
    table["inside"] = (table["q03"] <= table["observed"]) & (table["observed"] <= table["q97"])
    return table


def ppc_interval_plot(data, var_name: str | None = None, statistic=None, *, labels=None,
                      group: str = "posterior_predictive", num_samples: int = 500, log: bool = False,
                      relative: bool = False, xlabel: str | None = None, ylabel: str | None = None, title: str | None = None):
    """Posterior (or prior) predictive check, one statistic at a time: the observed value of each statistic
    (a red dot) over its predictive median and central 50% and 94% intervals (Gelman et al., BDA3 ch. 6).

    For discrete data with few values (die faces) or data on very different scales (counts per
    equivalence class) this says more than a pooled density (:func:`ppc_plot`), whose histogram bins can
    merge neighbouring values. The title counts the observed values inside their 94% interval.

    Args: as :func:`ppc_intervals`, and ``log`` (a symmetric log y axis, linear below 1, for counts),
        ``relative`` (every value divided by its predictive median, for statistics on different scales;
        the medians must be non-zero), ``xlabel``, ``ylabel``, ``title``.

    Returns:
        matplotlib Figure.

    Example:
        >>> fig = ppc_interval_plot(fit_nuts(hmm_model, rolls, num_states=2, num_emissions=6), "observations",
        ...                         lambda x: np.stack([(x == f).sum(-1) for f in range(6)], -1))  # doctest: +SKIP
    """
    from matplotlib.figure import Figure

    table = ppc_intervals(data, var_name, statistic, labels=labels, group=group, num_samples=num_samples)
    k = len(table)
    x = np.arange(k)
    shown = table
    if relative:
        if (table["median"] == 0).any():
            zero = list(table.index[table["median"] == 0])
            raise ValueError(f"relative: the predictive median of {zero} is 0; drop those statistics or pass "
                             "relative=False")
        cols = ["observed", "q03", "q25", "median", "q75", "q97"]
        shown = table[cols].div(table["median"], axis=0)
    fig = Figure(figsize=(min(max(4.0, 0.32 * k + 2.0), 10.0), 3.4), layout="constrained")
    ax = fig.add_subplot()
    ax.vlines(x, shown["q03"], shown["q97"], color="#56B4E9", lw=2.0, label="predictive 94%")
    ax.vlines(x, shown["q25"], shown["q75"], color="#0072B2", lw=5.0, label="predictive 50%")
    ax.scatter(x, shown["median"], marker="_", s=90, color="white", zorder=3, linewidths=1.2)
    ax.scatter(x, shown["observed"], color="#D55E00", s=18, zorder=4, label="observed")
    long = k > 12 or max(len(str(i)) for i in table.index) * k > 60
    ax.set_xticks(x, labels=list(table.index), rotation=90 if long else 0, fontsize=8 if k > 12 else 10)
    if log:
        ax.set_yscale("symlog", linthresh=1.0)
        if (shown.to_numpy(float) >= 0).all():
            ax.set_ylim(bottom=0)  # counts: no empty negative half
    if relative:
        ax.axhline(1.0, color="#9a9a9a", lw=0.8, zorder=0)
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel or ("value / predictive median" if relative else "value"))
    ax.legend(loc="best", fontsize=8, frameon=False)
    inside = int(table["inside"].sum())
    what = "posterior" if group == "posterior_predictive" else "prior"
    head = f"{inside} of {k} observed values inside their 94% {what} predictive interval"
    ax.set_title(f"{title}: {head}" if title else head, fontsize=10)
    return fig
