"""diffbio_prob.operators.datarax without the datarax extra: nothing imports it, and asking for an adapter
says how to install it. Runs with or without datarax installed (its absence is simulated)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_importing_the_package_and_the_module_loads_no_datarax():
    code = ("import json, sys, diffbio_prob, diffbio_prob.operators, diffbio_prob.operators.datarax as m\n"
            "print(json.dumps({'datarax': 'datarax' in sys.modules, 'jax': 'jax' in sys.modules}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"datarax": False, "jax": False}


@pytest.mark.parametrize("name", ["DataraxHMM", "DataraxNBGLM", "DataraxEMQuantifier", "DataraxOperator",
                                  "to_datarax"])
def test_without_the_extra_the_error_names_it(monkeypatch, name):
    import diffbio_prob.operators.datarax as adapters

    monkeypatch.setitem(sys.modules, "datarax", None)  # `import datarax` now raises ImportError
    # the uncached builder: classes built earlier in this process must not hide the absence (and the
    # cache, restored afterwards, keeps the classes other tests imported)
    monkeypatch.setattr(adapters, "_classes", adapters._classes.__wrapped__)
    with pytest.raises(ImportError, match=r"pip install 'diffbio-prob\[datarax\]'"):
        obj = getattr(adapters, name)
        if name == "to_datarax":
            obj(object())


def test_unknown_attribute_is_an_attribute_error():
    import diffbio_prob.operators.datarax as adapters

    with pytest.raises(AttributeError, match="NoSuchThing"):
        adapters.NoSuchThing
