"""A command imports what it uses: each check runs in a fresh interpreter and reads ``sys.modules``.

``import diffbio_prob`` loads no JAX, the package ``__init__``s load their heavy submodules on first use
(PEP 562), and a plain DESeq2 run (``diffbio-prob de``) or EM quantification never loads the plotting,
ArviZ, Flax, optax or NumPyro stacks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "diffbio_prob" / "data" / "salmon_sample"
PLOTTING = ("matplotlib", "arviz", "xarray", "h5netcdf")
FITTING = ("flax", "optax", "numpyro", "tqdm")


def _loaded_after(code: str, tmp_path: Path) -> dict:
    """Run ``code`` in a new interpreter; it prints a JSON object."""
    env = os.environ | {"JAX_PLATFORMS": "cpu", "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


HEAVY = ("jax", "pandas", "scipy.stats", "scipy.optimize", *PLOTTING, *FITTING)
CHECK = f"""
import json, sys
HEAVY = {HEAVY!r}
def loaded():
    return sorted(m for m in HEAVY if m in sys.modules)
"""


def test_package_inits_are_lazy(tmp_path):
    out = _loaded_after(CHECK + """
        steps = {}
        import diffbio_prob
        steps["diffbio_prob"] = loaded()
        import diffbio_prob.plots, diffbio_prob.plots.pca
        steps["plots"] = loaded()
        import diffbio_prob.models
        steps["models"] = loaded()
        import diffbio_prob.inference
        steps["inference"] = loaded()
        assert callable(diffbio_prob.inference.fit_svi) and callable(diffbio_prob.plots.ma_plot)
        steps["asked"] = loaded()
        print(json.dumps(steps))
    """.replace("\n        ", "\n"), tmp_path)
    assert out["diffbio_prob"] == []  # no JAX, no pandas
    assert not set(out["plots"]) & {"matplotlib", "jax"}  # plots.pca's numbers need numpy and pandas only
    assert not set(out["models"]) & {"numpyro", "jax"}
    assert not set(out["inference"]) & set(PLOTTING + FITTING)  # jax (Baum-Welch, chain maps) only
    assert {"numpyro", "optax", "matplotlib"} <= set(out["asked"])  # the names still resolve, on demand


def _run_cli(argv: list[str], tmp_path: Path) -> dict:
    return _loaded_after(CHECK + f"""
from diffbio_prob.cli import main
code = main({argv!r})
print(json.dumps({{"code": code, "loaded": loaded()}}))
""", tmp_path)


def test_quant_imports_neither_plots_nor_fitting_stacks(tmp_path):
    out = _run_cli(["quant", "--eq-classes", str(SAMPLE / "eq_classes.txt.gz"), "--lengths", str(SAMPLE / "quant.sf"),
                    "--out", str(tmp_path / "quant.sf"), "--quiet"], tmp_path)
    assert out["code"] == 0
    assert not set(out["loaded"]) & set(PLOTTING + FITTING), out["loaded"]


@pytest.mark.slow
def test_de_imports_neither_plots_nor_fitting_stacks(tmp_path):
    rng = np.random.default_rng(1)
    mu = 2.0 ** rng.normal(5.0, 1.5, 100)[:, None] * np.where(np.arange(6) < 3, 1.0, 2.0)
    samples = [f"s{j}" for j in range(6)]
    pd.DataFrame(rng.negative_binomial(5.0, 5.0 / (5.0 + mu)), index=[f"g{i}" for i in range(100)],
                 columns=samples).to_csv(tmp_path / "counts.csv")
    pd.DataFrame({"condition": ["A"] * 3 + ["B"] * 3}, index=samples).to_csv(tmp_path / "meta.csv")
    out = _run_cli(["de", "--counts", str(tmp_path / "counts.csv"), "--metadata", str(tmp_path / "meta.csv"),
                    "--design", "~condition", "--out", str(tmp_path / "de.csv"), "--quiet"], tmp_path)
    assert out["code"] == 0 and (tmp_path / "de.csv").is_file()
    # scipy.stats (~0.6 s to import): its p-value functions come from scipy.special; scipy.optimize (~0.1 s)
    # only for the optim fallback and the iterative size factors
    assert not set(out["loaded"]) & set(PLOTTING + FITTING + ("scipy.stats", "scipy.optimize")), out["loaded"]


@pytest.mark.slow
def test_hmm_em_imports_no_plots(tmp_path):
    (tmp_path / "rolls.txt").write_text("".join(map(str, np.random.default_rng(2).integers(1, 7, 300))) + "\n")
    out = _run_cli(["hmm", "--input", str(tmp_path / "rolls.txt"), "--states", "2", "--out", str(tmp_path / "o"),
                    "--quiet"], tmp_path)
    assert out["code"] == 0
    assert not set(out["loaded"]) & set(PLOTTING), out["loaded"]
