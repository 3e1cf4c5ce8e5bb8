"""JAX's persistent compilation cache in the user's cache folder: on by default for the CLI, opt-in from Python.

Most of a short run's time is XLA compiling its programs (docs/notes/de.md: 6.8 s of a 13.6 s DE run);
with the cache a later process loads the executables instead. JAX keys an entry by the program text, the
devices, the compile options and the JAX version, so a key is only useful if the program text is the same
in every process (no ``id()``s or hash-ordered sets in it).

* CLI: :func:`process_cache` around every subcommand (``diffbio_prob.cli.main``).
* Python: :func:`enable_compilation_cache` (exported as ``diffbio_prob.enable_compilation_cache``). The
  workflows never change JAX's global configuration on their own.

Where: ``$XDG_CACHE_HOME/diffbio-prob/jax``, else ``~/.cache/diffbio-prob/jax``. Off: ``DIFFBIO_PROB_JAX_CACHE=0``
(also ``false``, ``no``, ``off``). A folder the user gave JAX (``JAX_COMPILATION_CACHE_DIR`` or
``jax_compilation_cache_dir``) wins, and then this module changes nothing.

jax and the standard library only; ``jax`` is imported only when it is already loaded or asked for.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

__all__ = ["OFF_VARIABLE", "default_cache_dir", "enable_compilation_cache", "process_cache"]

#: Environment variable that turns the cache off (``0``, ``false``, ``no``, ``off``).
OFF_VARIABLE = "DIFFBIO_PROB_JAX_CACHE"
_OFF = ("0", "false", "no", "off")
_DIR = "jax_compilation_cache_dir"
# Every program is cached, however small or quick to compile: a CLI run is dozens of small programs
# (eager ops, the per-gene kernels) whose compile time, not run time, is what the user waits for.
# -1 also stops JAX from raising the size floor for the file system.
_THRESHOLDS = {"jax_persistent_cache_min_compile_time_secs": 0.0, "jax_persistent_cache_min_entry_size_bytes": -1}
# What a JAX imported without these variables set starts with (checked by tests/test_compile_cache.py).
_JAX_DEFAULTS = {_DIR: None, "jax_persistent_cache_min_compile_time_secs": 1.0,
                 "jax_persistent_cache_min_entry_size_bytes": 0}


def default_cache_dir() -> str:
    """``$XDG_CACHE_HOME/diffbio-prob/jax`` (``~/.cache/diffbio-prob/jax`` without it)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "diffbio-prob", "jax")


def _switched_off() -> bool:
    return os.environ.get(OFF_VARIABLE, "1").strip().lower() in _OFF


def _user_folder() -> str | None:
    """The cache folder the user gave JAX, if any (read without importing JAX)."""
    if os.environ.get(_DIR.upper()):
        return os.environ[_DIR.upper()]
    jax = sys.modules.get("jax")
    return getattr(jax.config, _DIR, None) if jax is not None else None


def _usable(folder: str) -> bool:
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:  # a read-only home: run without the cache rather than fail
        return False
    return os.access(folder, os.W_OK)


def enable_compilation_cache(path: str | os.PathLike | None = None) -> str | None:
    """Keep JAX's compiled programs on disk, so later processes skip XLA compilation.

    Changes JAX's global configuration for this process (``jax_compilation_cache_dir``, and caches every
    program however small); call it before the first fit. ``DIFFBIO_PROB_JAX_CACHE=0`` makes it a no-op.

    Args:
        path: the folder; default :func:`default_cache_dir`, or the folder already configured for JAX.

    Returns:
        The folder in use, or ``None`` when the cache stays off (switched off, or the folder not writable).

    Example:
        >>> import diffbio_prob
        >>> folder = diffbio_prob.enable_compilation_cache("/tmp/diffbio-prob-jax-cache")
    """
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a folder name (str or os.PathLike), got {type(path).__name__}")
    if _switched_off():
        return None
    import jax

    if path is None and _user_folder():
        return _user_folder()
    folder = os.fspath(path) if path is not None else default_cache_dir()
    if not folder:
        raise ValueError("path: expected a folder name, got an empty string")
    if not _usable(folder):
        return None
    jax.config.update(_DIR, folder)
    for name, value in _THRESHOLDS.items():
        jax.config.update(name, value)
    return folder


@contextlib.contextmanager
def process_cache() -> Iterator[str | None]:
    """The cache for one CLI run, JAX's configuration as it was afterwards (``main()`` may run in-process).

    Does not import JAX: if it is not loaded yet, the settings go into the environment, where JAX reads
    them on import (a subcommand without JAX, ``tximport``, stays without it; spawned workers inherit
    them). Yields the folder, or ``None`` when the cache stays off.
    """
    if _switched_off() or _user_folder():
        yield None
        return
    folder = default_cache_dir()
    if not _usable(folder):
        yield None
        return
    settings = {_DIR: folder, **_THRESHOLDS}
    jax_loaded = "jax" in sys.modules
    saved_env = {name.upper(): os.environ.get(name.upper()) for name in settings}
    if jax_loaded:
        import jax

        before = {name: getattr(jax.config, name) for name in settings}
        for name, value in settings.items():
            jax.config.update(name, value)
    else:
        # a threshold the user exported stays theirs
        before = {name: _JAX_DEFAULTS[name] for name in settings if saved_env[name.upper()] is None}
        for name in before:
            os.environ[name.upper()] = str(settings[name])
    try:
        yield folder
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if "jax" in sys.modules:
            import jax
            from jax.experimental.compilation_cache import compilation_cache

            for name, value in before.items():
                jax.config.update(name, value)
            # JAX opens the cache once per process: forget it, or later compilations still write here.
            compilation_cache.reset_cache()
