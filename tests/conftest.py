"""Shared fixtures. Tests that compare numbers run in float64: the autouse fixture below turns x64 on
for every test not marked ``float32`` and restores the previous setting afterwards."""

from __future__ import annotations

from pathlib import Path

import jax
import pytest

# Copies of ../shared/deseq2_ref and ../shared/em_ref (outputs only) travel with the repo so CI needs nothing else.
REFERENCE = Path(__file__).resolve().parent / "reference" / "data"


def pytest_configure(config):
    config.addinivalue_line("markers", "float32: run this test with jax_enable_x64 off")


@pytest.fixture(autouse=True)
def _precision(request):
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", request.node.get_closest_marker("float32") is None)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture(scope="session")
def deseq2_ref() -> Path:
    """R DESeq2's outputs (copy of ``../shared/deseq2_ref``)."""
    return REFERENCE / "deseq2_ref"


@pytest.fixture(scope="session")
def em_ref() -> Path:
    """salmon 1.10.1's outputs and the true counts (copy of ``../shared/em_ref`` without the reads)."""
    return REFERENCE / "em_ref"
