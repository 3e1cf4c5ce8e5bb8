"""JAX's persistent compilation cache (diffbio_prob/compile_cache.py): the CLI's default, Python's opt-in.

The property that matters is that a second process finds every program the first one compiled: the CLI
commands and the NUTS / SVI fits run twice, in two processes with different ``PYTHONHASHSEED`` values (a
program whose text follows string-hash order gets a new key in each), and the second run must add no cache
entry. The rest checks where the cache goes, the off switch, and that JAX's configuration is left as found.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from diffbio_prob import compile_cache, enable_compilation_cache

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "diffbio_prob" / "data" / "salmon_sample"
SETTINGS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
            "jax_persistent_cache_min_entry_size_bytes")


def _clean_env(xdg: Path, hash_seed: int = 0) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JAX_PERSISTENT_CACHE", "JAX_COMPILATION_CACHE")) and k != compile_cache.OFF_VARIABLE}
    return env | {"XDG_CACHE_HOME": str(xdg), "JAX_PLATFORMS": "cpu", "PYTHONHASHSEED": str(hash_seed)}


def _entries(folder: Path) -> set[str]:
    """Executables in a JAX cache folder (not its ``-atime`` bookkeeping, not XLA's autotune folder)."""
    if not folder.is_dir():
        return set()
    return {p.name for p in folder.iterdir() if p.is_file() and not p.name.endswith("-atime")}


def _run(argv: list[str], env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture
def jax_cache_config():
    """Leave this process's JAX cache settings as they were, and JAX's cache object unopened."""
    from jax.experimental.compilation_cache import compilation_cache as cc

    before = {name: getattr(jax.config, name) for name in SETTINGS}
    yield
    for name, value in before.items():
        jax.config.update(name, value)
    cc.reset_cache()


def _compile_something(scale: float) -> None:
    # a program no other test compiles (the constant is part of the program text)
    jax.jit(lambda x: x * scale + 0.5)(jnp.arange(7.0)).block_until_ready()


# --- where, off switch, configuration left alone ------------------------------------------------


def test_restored_values_are_jax_defaults(tmp_path):
    """process_cache restores a JAX it saw imported to these values: JAX's own defaults (asked of JAX)."""
    code = f"import jax, json; print(json.dumps([getattr(jax.config, n) for n in {list(SETTINGS)!r}]))"
    proc = _run([sys.executable, "-c", code], _clean_env(tmp_path))
    assert json.loads(proc.stdout) == [compile_cache._JAX_DEFAULTS[n] for n in SETTINGS]


def test_process_cache_before_jax_is_imported(tmp_path):
    """No JAX import of its own; JAX, imported inside, reads the settings; afterwards all is as before."""
    code = textwrap.dedent(f"""
        import json, os, sys
        from diffbio_prob import compile_cache
        names = {list(SETTINGS)!r}
        with compile_cache.process_cache() as folder:
            loaded = "jax" in sys.modules
            import jax
            inside = [getattr(jax.config, n) for n in names]
        after = [getattr(jax.config, n) for n in names]
        env = [os.environ.get(n.upper()) for n in names]
        print(json.dumps({{"folder": folder, "loaded": loaded, "inside": inside, "after": after, "env": env}}))
    """)
    out = json.loads(_run([sys.executable, "-c", code], _clean_env(tmp_path)).stdout)
    folder = str(tmp_path / "diffbio-prob" / "jax")
    assert out["folder"] == folder and not out["loaded"]
    assert out["inside"] == [folder, 0.0, -1]
    assert out["after"] == [compile_cache._JAX_DEFAULTS[n] for n in SETTINGS]
    assert out["env"] == [None, None, None]


def test_process_cache_in_process_restores_config(tmp_path, monkeypatch, jax_cache_config):
    for name in SETTINGS:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv(compile_cache.OFF_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    before = [getattr(jax.config, n) for n in SETTINGS]
    folder = tmp_path / "diffbio-prob" / "jax"
    with compile_cache.process_cache() as used:
        assert used == str(folder)
        assert [getattr(jax.config, n) for n in SETTINGS] == [str(folder), 0.0, -1]
        _compile_something(3.25)
        inside = _entries(folder)
    assert inside  # a tiny program is cached too (the thresholds)
    assert [getattr(jax.config, n) for n in SETTINGS] == before
    _compile_something(4.75)  # JAX's cache was closed: nothing more goes into the folder
    assert _entries(folder) == inside


@pytest.mark.parametrize("value", ["0", "off", "False", "no"])
def test_off_switch(tmp_path, monkeypatch, jax_cache_config, value):
    monkeypatch.setenv(compile_cache.OFF_VARIABLE, value)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    before = [getattr(jax.config, n) for n in SETTINGS]
    with compile_cache.process_cache() as used:
        assert used is None
    assert enable_compilation_cache() is None and enable_compilation_cache(tmp_path / "x") is None
    assert [getattr(jax.config, n) for n in SETTINGS] == before
    assert not (tmp_path / "diffbio-prob").exists() and not (tmp_path / "x").exists()


def test_user_folder_wins(tmp_path, monkeypatch, jax_cache_config):
    monkeypatch.delenv(compile_cache.OFF_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "mine"))
    before = [getattr(jax.config, n) for n in SETTINGS]
    with compile_cache.process_cache() as used:
        assert used is None
    assert enable_compilation_cache() == str(tmp_path / "mine")
    assert [getattr(jax.config, n) for n in SETTINGS] == before
    assert not (tmp_path / "xdg").exists()


def test_default_cache_dir(monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", "/some/where")
    assert compile_cache.default_cache_dir() == os.path.join("/some/where", "diffbio-prob", "jax")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert compile_cache.default_cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "diffbio-prob", "jax")


def test_enable_compilation_cache(tmp_path, monkeypatch, jax_cache_config):
    monkeypatch.delenv(compile_cache.OFF_VARIABLE, raising=False)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    jax.config.update("jax_compilation_cache_dir", None)
    folder = tmp_path / "cache"
    assert enable_compilation_cache(folder) == str(folder)
    assert [getattr(jax.config, n) for n in SETTINGS] == [str(folder), 0.0, -1]
    _compile_something(5.125)
    assert _entries(folder)


@pytest.mark.parametrize("path, exc, match", [(3, TypeError, "path: expected a folder name"),
                                               ("", ValueError, "path: expected a folder name")])
def test_enable_compilation_cache_rejects(monkeypatch, path, exc, match):
    monkeypatch.delenv(compile_cache.OFF_VARIABLE, raising=False)
    with pytest.raises(exc, match=match):
        enable_compilation_cache(path)


# --- keys stable across processes ---------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    mu = 2.0 ** rng.normal(5.0, 1.5, 120)[:, None] * np.where(np.arange(6) < 3, 1.0, 2.0)
    counts = rng.negative_binomial(5.0, 5.0 / (5.0 + mu))
    samples = [f"s{j}" for j in range(6)]
    pd.DataFrame(counts, index=[f"g{i}" for i in range(120)], columns=samples).to_csv(work / "counts.csv")
    pd.DataFrame({"condition": ["A"] * 3 + ["B"] * 3}, index=samples).to_csv(work / "meta.csv")
    (work / "rolls.txt").write_text("".join(map(str, rng.integers(1, 7, 300))) + "\n")
    return work


def _cli(inputs: Path, out: Path, command: str) -> list[str]:
    quant = ["quant", "--eq-classes", str(SAMPLE / "eq_classes.txt.gz"), "--lengths", str(SAMPLE / "quant.sf"),
             "--out", str(out / "quant.sf")]
    hmm = ["hmm", "--input", str(inputs / "rolls.txt"), "--states", "2", "--out", str(out / "hmm")]
    args = {
        "quant": quant,
        "quant-svi": quant + ["--posterior", "svi", "--num-samples", "20"],
        "quant-nuts": quant + ["--posterior", "nuts", "--num-samples", "20"],
        "de": ["de", "--counts", str(inputs / "counts.csv"), "--metadata", str(inputs / "meta.csv"),
               "--design", "~condition", "--out", str(out / "de.csv")],
        "hmm": hmm,
        "hmm-svi": hmm + ["--fit", "svi", "--num-samples", "20"],
        "hmm-nuts": hmm + ["--fit", "nuts", "--num-warmup", "20", "--num-samples", "20", "--chains", "1"],
    }[command]
    return [sys.executable, "-m", "diffbio_prob", *args, "--quiet"]


slow = pytest.mark.slow


@pytest.mark.parametrize("command", ["quant", pytest.param("de", marks=slow), pytest.param("hmm", marks=slow),
                                     pytest.param("hmm-svi", marks=[slow, pytest.mark.long]),  # test_python_fits_..._hash_seeds[svi] pytest.param("hmm-nuts", marks=slow),
                                     pytest.param("quant-svi", marks=[slow, pytest.mark.long]),  # the hmm fits show the
                                     pytest.param("quant-nuts", marks=[slow, pytest.mark.long])])  # same cache keys
def test_second_process_hits_the_cache(inputs, tmp_path, command):
    folder = tmp_path / "xdg" / "diffbio-prob" / "jax"
    first, second = tmp_path / "first", tmp_path / "second"
    for out in (first, second):
        out.mkdir()
    _run(_cli(inputs, first, command), _clean_env(tmp_path / "xdg", hash_seed=0))
    cached = _entries(folder)
    assert cached, "the first run cached nothing"
    _run(_cli(inputs, second, command), _clean_env(tmp_path / "xdg", hash_seed=1))
    new = _entries(folder) - cached
    assert not new, f"the second process compiled again: {sorted(new)}"
    if command == "quant":  # the loaded executables compute what the compiled ones did
        a, b = (pd.read_csv(d / "quant.sf", sep="\t", index_col=0) for d in (first, second))
        np.testing.assert_allclose(b.to_numpy(float), a.to_numpy(float), rtol=1e-6)


SVI_SCRIPT = """
import sys
import diffbio_prob
assert diffbio_prob.enable_compilation_cache(sys.argv[1]) == sys.argv[1]
import jax.numpy as jnp, numpyro, numpyro.distributions as dist
from diffbio_prob.inference import fit_nuts, fit_svi

def model(y):  # several latent sites: NumPyro's Trace_ELBO traced them in string-hash order
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    tau = numpyro.sample("tau", dist.HalfNormal(1.0))
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
    numpyro.sample("obs", dist.Normal(mu + beta, tau), obs=y)

y = jnp.linspace(-1.0, 1.0, 20)
if sys.argv[2] == "svi":
    fit_svi(model, y, num_steps=20, num_samples=10, progress=False, posterior_predictive=False)
else:
    fit_nuts(model, y, num_warmup=20, num_samples=20, num_chains=1, progress=False, posterior_predictive=False)
"""


@pytest.mark.slow
@pytest.mark.parametrize("fit", ["svi", "nuts"])
def test_python_fits_hit_the_cache_across_hash_seeds(tmp_path, fit):
    """Python's opt-in path, and the fits' programs independent of PYTHONHASHSEED (seeds 0 and 1 gave two
    SVI programs with NumPyro's Trace_ELBO)."""
    folder = tmp_path / "cache"
    script = tmp_path / "fit.py"
    script.write_text(SVI_SCRIPT)
    _run([sys.executable, str(script), str(folder), fit], _clean_env(tmp_path / "xdg", hash_seed=0))
    cached = _entries(folder)
    program = "jit_fit" if fit == "svi" else "jit_recorded"  # the SVI program; the NUTS chain program
    assert any(name.startswith(program + "-") for name in cached), sorted(cached)
    _run([sys.executable, str(script), str(folder), fit], _clean_env(tmp_path / "xdg", hash_seed=1))
    assert not _entries(folder) - cached, sorted(_entries(folder) - cached)
