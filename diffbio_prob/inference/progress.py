"""Progress bars driven from inside a compiled program.

A fit is one compiled program; its loop calls :meth:`Progress.tick` (a ``jax.debug.callback`` every
``rate`` steps), and the host side moves a tqdm bar. The callback is part of the program whether or not a
bar is shown, so ``progress=True`` and ``progress=False`` run the same program and give the same numbers;
only the host side differs (it ignores the calls when no bar is wanted).
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Progress"]


class Progress:
    """Host-side state of one or more progress bars (one per chain).

    Args:
        enabled: show bars; without, the program's callbacks are ignored.
        total: steps each bar counts to.
        desc: ``desc(bar, step) -> str``, the bar's label (e.g. the chain and its warm-up/sampling phase).
        bars: number of bars (chains).
    """

    def __init__(self, enabled: bool, total: int, desc: Callable[[int, int], str], bars: int = 1):
        self.enabled = bool(enabled)
        self.total = int(total)
        self.rate = max(1, self.total // 20)
        self.desc = desc
        self.num_bars = int(bars)
        self._bars: dict[int, Any] = {}
        self._lock = threading.Lock()

    # --------------------------------------------------------------------------- inside the program
    def tick(self, bar, step, **info) -> None:
        """Report that ``bar`` has done ``step`` steps (traced; ``step`` counts from 1).

        Calls back to the host every ``rate`` steps and at the last one. ``step`` must not depend on
        the chain (a loop counter), so under ``vmap`` the condition stays a branch rather than a select.
        ``info``: scalars shown as the bar's postfix.
        """
        due = (step % self.rate == 0) | (step == self.total)
        jax.lax.cond(due, lambda: jax.debug.callback(self._update, bar, step, info), lambda: None)

    # ----------------------------------------------------------------------------------- host side
    def _update(self, bar, step, info) -> None:
        if not self.enabled:
            return
        bar, step = int(np.asarray(bar)), int(np.asarray(step))
        with self._lock:
            pbar = self._bars.get(bar)
            if pbar is None:
                from tqdm.auto import tqdm

                pbar = self._bars[bar] = tqdm(total=self.total, position=bar, leave=False,
                                              desc=self.desc(bar, 0), mininterval=0.5)
            pbar.set_description(self.desc(bar, step), refresh=False)
            if info:
                pbar.set_postfix({k: f"{float(np.asarray(v)):.3g}" for k, v in info.items()}, refresh=False)
            pbar.update(step - pbar.n)
            if step >= self.total:
                pbar.close()

    def close(self) -> None:
        """Close every bar still open (e.g. after a fit failed)."""
        with self._lock:
            for pbar in self._bars.values():
                pbar.close()
            self._bars.clear()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def step_counter() -> jax.Array:
    """The loop counter a program carries for :meth:`Progress.tick` (independent of any chain)."""
    return jnp.zeros((), jnp.int32)
