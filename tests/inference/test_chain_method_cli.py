"""``--chain-method`` on the commands that run NUTS (``hmm --fit nuts``, ``quant --posterior nuts``), and
``chain_method="auto"``: ``"parallel"`` when one process has two or more devices to spread the chains
over, else ``"sequential"`` (issue #14).

``de`` has no ``--chain-method``: ``de --method bayes`` fits by SVI only (``run_bayes_de``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import diffbio_prob.inference as inference
from diffbio_prob import cli
from diffbio_prob.inference import fit_nuts, register_chain_map
from diffbio_prob.inference.chains import chain_map_names, chain_method_names, resolve_chain_method

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "diffbio_prob" / "data" / "salmon_sample"
#: the smallest NUTS run of the CLI tests (tests/test_compile_cache.py), with two chains to map
TINY_NUTS = ["--num-warmup", "20", "--num-samples", "20", "--chains", "2"]


def normal_mean(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)


@pytest.fixture()
def rolls(tmp_path) -> Path:
    path = tmp_path / "rolls.txt"
    path.write_text("".join(map(str, np.random.default_rng(0).integers(1, 7, 300))) + "\n")
    return path


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_cli_choices_are_the_chain_methods():
    # the parser spells them out (it is built before JAX loads); the library's list is the truth
    assert cli._CHAIN_METHODS == ("auto", "sequential", "lax_map", "vectorized", "parallel")
    assert set(cli._CHAIN_METHODS) <= set(chain_method_names())
    assert chain_method_names()[0] == "auto" and "auto" not in chain_map_names()


# --------------------------------------------------------------------------------------- the CLI
@pytest.mark.slow
def test_hmm_nuts_vectorized_runs_and_writes(rolls, tmp_path, monkeypatch):
    seen = []

    def recording(*args, **kwargs):
        result = real(*args, **kwargs)
        seen.append((kwargs.get("chain_method"), result.extra["chain_method"]))
        return result

    real = inference.fit_nuts
    monkeypatch.setattr(inference, "fit_nuts", recording)
    out = tmp_path / "out"
    argv = ["hmm", "--input", str(rolls), "--states", "2", "--fit", "nuts", *TINY_NUTS, "--chain-method",
            "vectorized", "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    assert seen == [("vectorized", "vectorized")]
    assert {"posteriors.tsv", "viterbi.tsv", "parameters.json", "posterior_summary.tsv", "posterior.nc"} <= {
        p.name for p in out.iterdir()}
    import arviz as az

    post = az.from_netcdf(out / "posterior.nc")["posterior"].to_dataset()
    assert (post.sizes["chain"], post.sizes["draw"]) == (2, 20)


class _Stop(Exception):
    """Raised by the fit_nuts stand-in: the arguments it was called with are all the test needs."""


@pytest.fixture()
def nuts_calls(monkeypatch) -> list[str]:
    seen: list[str] = []

    def stand_in(*args, **kwargs):
        seen.append(kwargs.get("chain_method"))
        raise _Stop

    monkeypatch.setattr(inference, "fit_nuts", stand_in)
    return seen


def _quant_one(tmp_path) -> list[str]:
    return ["quant", "--eq-classes", str(SAMPLE / "eq_classes.txt.gz"), "--lengths", str(SAMPLE / "quant.sf"),
            "--out", str(tmp_path / "q" / "quant.sf"), "--quiet"]


def _quant_two(tmp_path) -> list[str]:
    (tmp_path / "names.txt").write_text("A\nB\n")
    eq = str(SAMPLE / "eq_classes.txt.gz")
    return ["quant", "--eq-classes", eq, eq, "--samples", str(tmp_path / "names.txt"), "--lengths",
            str(SAMPLE / "quant.sf"), "--out-dir", str(tmp_path / "qq"), "--quiet"]


@pytest.mark.parametrize("given, expected", [([], "auto"), (["--chain-method", "lax_map"], "lax_map")])
@pytest.mark.parametrize("route", ["one", "many"])
def test_quant_nuts_passes_the_chain_method(tmp_path, nuts_calls, route, given, expected):
    argv = (_quant_one if route == "one" else _quant_two)(tmp_path) + ["--posterior", "nuts", *given]
    with pytest.raises(_Stop):
        cli.main(argv)
    assert nuts_calls == [expected]


def test_hmm_passes_the_chain_method(rolls, tmp_path, monkeypatch):
    seen = []

    def stand_in(*args, **kwargs):
        seen.append(kwargs["chain_method"])
        raise _Stop

    import diffbio_prob.workflows.hmm as hmm

    monkeypatch.setattr(hmm, "run_hmm", stand_in)
    base = ["hmm", "--input", str(rolls), "--states", "2", "--out", str(tmp_path / "o"), "--quiet"]
    for extra, expected in (([], "sequential"), (["--fit", "nuts"], "auto"),
                            (["--fit", "nuts", "--chain-method", "parallel"], "parallel")):
        with pytest.raises(_Stop):
            cli.main(base + extra)
        assert seen.pop() == expected


# (id, argv after the command's inputs, the one stderr line's fragment)
BAD = [
    ("hmm-unknown", "hmm", ["--fit", "nuts", "--chain-method", "threads"],
     "argument --chain-method: invalid choice: 'threads' (choose from 'auto', 'sequential', 'lax_map', "
     "'vectorized', 'parallel')"),
    ("hmm-em", "hmm", ["--chain-method", "parallel"], "--chain-method: only used with --fit nuts"),
    ("hmm-svi", "hmm", ["--fit", "svi", "--chain-method", "auto"], "--chain-method: only used with --fit nuts"),
    ("hmm-poisson", "bg", ["--chain-method", "sequential"], "--chain-method: only used with --fit nuts"),
    ("quant-unknown", "quant", ["--posterior", "nuts", "--chain-method", "pmap"],
     "argument --chain-method: invalid choice: 'pmap'"),
    ("quant-no-draws", "quant", ["--chain-method", "vectorized"], "--chain-method: only used with --posterior nuts"),
    ("quant-svi", "quant", ["--posterior", "svi", "--chain-method", "parallel"],
     "--chain-method: only used with --posterior nuts"),
    ("quant-bootstrap", "quant", ["--num-bootstraps", "3", "--chain-method", "auto"],
     "--chain-method: only used with --posterior nuts"),
    ("quant-many-gibbs", "quant-many", ["--num-gibbs-samples", "3", "--chain-method", "lax_map"],
     "--chain-method: only used with --posterior nuts"),
]


@pytest.mark.parametrize("kind, extra, fragment", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_chain_method_exit_2_one_line_nothing_written(tmp_path, rolls, capsys, monkeypatch, kind, extra,
                                                          fragment):
    import diffbio_prob.workflows.hmm as hmm
    import diffbio_prob.workflows.quant as quant

    def started(*args, **kwargs):
        raise AssertionError("a fit started on bad input")

    for module, name in ((hmm, "fit_hmm"), (hmm, "fit_emission_hmm"), (quant, "quantify"), (quant, "quantify_many"),
                         (quant, "posterior")):
        monkeypatch.setattr(module, name, started)
    (tmp_path / "depth.bedgraph").write_text("chr1\t0\t100\t3\nchr1\t100\t200\t4\n")
    out = tmp_path / "out"
    argv = {
        "hmm": ["hmm", "--input", str(rolls), "--states", "2", "--out", str(out)],
        "bg": ["hmm", "--emission", "poisson", "--input", str(tmp_path / "depth.bedgraph"), "--states", "2",
               "--out", str(out)],
        "quant": ["quant", "--eq-classes", str(SAMPLE / "eq_classes.txt.gz"), "--lengths", str(SAMPLE / "quant.sf"),
                  "--out", str(out / "quant.sf")],
        "quant-many": _quant_two(tmp_path)[:-3] + ["--out-dir", str(out)],
    }[kind] + extra + ["--quiet"]
    before = _files(tmp_path)
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"diffbio-prob {argv[0]}: error: ") and fragment in lines[0], lines[0]
    assert captured.out == ""
    assert _files(tmp_path) == before and not out.exists()


# ----------------------------------------------------------------------------------- the library
def test_python_entry_points_name_a_bad_chain_method(tmp_path, rolls):
    from diffbio_prob.workflows.hmm import fit_hmm, run_hmm
    from diffbio_prob.workflows.quant import run_quant

    with pytest.raises(ValueError, match=r"chain_method: expected one of 'auto', 'sequential', .* got 'threads'"):
        fit_nuts(normal_mean, np.zeros(3), chain_method="threads")
    with pytest.raises(ValueError, match="chain_method: expected one of"):
        fit_hmm([np.array([0, 1, 1])], 2, 2, "nuts", chain_method="pmap")
    with pytest.raises(ValueError, match="chain_method: expected one of"):
        run_hmm(rolls, 2, tmp_path / "o", fit="nuts", chain_method=None)
    with pytest.raises(ValueError, match="chain_method: expected one of"):
        run_quant(SAMPLE / "eq_classes.txt.gz", tmp_path / "q.sf", lengths=SAMPLE / "quant.sf",
                  posterior_method="nuts", chain_method="Parallel")
    assert not (tmp_path / "o").exists() and not (tmp_path / "q.sf").exists()
    with pytest.raises(ValueError, match="name: 'auto'"):
        register_chain_map("auto", lambda chain, keys, inputs: None)
    with pytest.raises(ValueError, match="num_chains"):
        resolve_chain_method("auto", 0)


def test_auto_on_one_device_is_sequential():
    if jax.device_count() != 1 or jax.process_count() != 1:
        pytest.skip("needs a single device (the multi-device rule: test_auto_is_parallel_on_two_devices)")
    for chains in (1, 2, 5):
        assert resolve_chain_method("auto", chains) == "sequential"
    y = np.linspace(-1.0, 3.0, 10)
    kw = dict(num_warmup=20, num_samples=10, num_chains=2, rng_key=3, progress=False)
    auto = fit_nuts(normal_mean, y, chain_method="auto", **kw)
    sequential = fit_nuts(normal_mean, y, chain_method="sequential", **kw)
    assert auto.extra["chain_method"] == "sequential"
    # the same chain map, so the same compiled program: equal draws, not merely close ones
    np.testing.assert_array_equal(auto.samples["mu"], sequential.samples["mu"])
    for name in sequential.sample_stats:
        np.testing.assert_array_equal(auto.sample_stats[name], sequential.sample_stats[name])


TWO_DEVICES = textwrap.dedent(
    """
    import jax, numpy as np, numpyro, numpyro.distributions as dist
    jax.config.update("jax_enable_x64", True)
    from diffbio_prob.inference import fit_nuts
    from diffbio_prob.inference.chains import resolve_chain_method
    assert jax.device_count() == 2 and jax.process_count() == 1, jax.devices()

    # 3 chains do not split over 2 devices: "parallel" would vectorise them on one
    rule = {n: resolve_chain_method("auto", n) for n in (1, 2, 3, 4)}
    assert rule == {1: "sequential", 2: "parallel", 3: "sequential", 4: "parallel"}, rule
    assert resolve_chain_method("vectorized", 2) == "vectorized"

    def model(y):
        mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    y = np.linspace(-1.0, 3.0, 10)
    kw = dict(num_warmup=20, num_samples=10, num_chains=2, rng_key=1, progress=False)
    auto = fit_nuts(model, y, chain_method="auto", **kw)
    assert auto.extra["chain_method"] == "parallel", auto.extra
    parallel = fit_nuts(model, y, chain_method="parallel", **kw)
    np.testing.assert_array_equal(auto.samples["mu"], parallel.samples["mu"])
    assert auto.samples["mu"].shape == (2, 10)
    print("OK")
    """
)


@pytest.mark.slow
def test_auto_is_parallel_on_two_devices():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    proc = subprocess.run([sys.executable, "-c", TWO_DEVICES], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stderr[-3000:]
