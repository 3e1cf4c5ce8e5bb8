"""The one place the inference layer imports NumPyro names from outside its top-level public modules.

``log_density`` is documented (NumPyro's "Inference Utilities") but lives in ``numpyro.infer.util``, next to
private helpers; importing it here keeps every other inference module on ``numpyro``, ``numpyro.infer``
and ``numpyro.handlers`` (``tests/inference/test_compiled_fits.py`` checks that), so a NumPyro release that
moves it is fixed in one line.
"""

from numpyro.infer.util import log_density

__all__ = ["log_density"]
