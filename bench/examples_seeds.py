"""Every example's ``main(small=True, seed=s)`` for seeds 0..4: a pass/fail table (issue #13, item 8).

Not a test (the suite's budget holds one seed per example; ``tests/test_examples.py`` checks the other
seeds' NUTS starts without sampling). Each example runs in its own process, all its seeds in turn, so a
crash in one cannot hide another's result and every process starts as a fresh install does. A run passes
when ``main`` returns and every number in what it returns (arrays, tables, fits' draws) is finite; the
table also shows NUTS divergences (summed over the example's fits) and the wall seconds.

    .venv/bin/python bench/examples_seeds.py                        # every example, seeds 0..4
    .venv/bin/python bench/examples_seeds.py --examples 01 06 --seeds 1 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# Run inside each child: imports the example by path, runs every seed, prints one JSON line per seed.
CHILD = r"""
import json, runpy, sys, time, traceback, tempfile
import numpy as np

def numbers(obj, depth=0):
    # every float array reachable from what main returned (dicts, lists, tables, FitResults)
    if depth > 4:
        return
    if hasattr(obj, "samples") and hasattr(obj, "sample_stats"):  # a FitResult
        yield from (np.asarray(v) for v in obj.samples.values())
        return
    if hasattr(obj, "select_dtypes"):  # a pandas DataFrame
        # az.compare's p_worse is NaN for the best model by design (nothing to be worse than)
        yield obj.drop(columns=["p_worse"], errors="ignore").select_dtypes("number").to_numpy(float)
        return
    if isinstance(obj, dict):
        for v in obj.values():
            yield from numbers(v, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from numbers(v, depth + 1)
    elif isinstance(obj, (float, int, np.ndarray, np.generic)) and not isinstance(obj, bool):
        arr = np.asarray(obj)
        if np.issubdtype(arr.dtype, np.number):
            yield arr.astype(float)

def divergences(obj, depth=0):
    if depth > 3:
        return 0
    if hasattr(obj, "num_divergences") and hasattr(obj, "samples"):
        return obj.num_divergences
    if isinstance(obj, dict):
        return sum(divergences(v, depth + 1) for v in obj.values())
    return 0

script, seeds = sys.argv[1], [int(s) for s in sys.argv[2].split(",")]
main = runpy.run_path(script, run_name="example")["main"]
for seed in seeds:
    start = time.perf_counter()
    row = {"seed": seed}
    try:
        kwargs = {"out_dir": tempfile.mkdtemp()} if "out_dir" in main.__code__.co_varnames else {}
        out = main(small=True, seed=seed, **kwargs)
        bad = sum(int(np.sum(~np.isfinite(a))) for a in numbers(out))
        row.update(ok=bad == 0, nonfinite=bad, divergences=divergences(out))
    except Exception as exc:
        row.update(ok=False, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}")
    row["seconds"] = round(time.perf_counter() - start, 1)
    print("ROW " + json.dumps(row), flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", nargs="*", default=None, help="number prefixes (default: all)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    scripts = sorted(EXAMPLES.glob("[0-9][0-9]_*.py"))
    if args.examples:
        scripts = [s for s in scripts if s.name[:2] in args.examples]
    seeds = ",".join(map(str, args.seeds))
    rows = []
    for script in scripts:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, str(script), seeds], capture_output=True, text=True,
                              cwd=ROOT)
        found = [json.loads(line[4:]) for line in proc.stdout.splitlines() if line.startswith("ROW ")]
        if not found:  # the process died before any seed finished
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1][:120]
            found = [{"seed": s, "ok": False, "error": f"process exit {proc.returncode}: {tail}"} for s in args.seeds]
        for row in found:
            rows.append({"example": script.name, **row})
            status = "pass" if row["ok"] else "FAIL"
            detail = row.get("error") or f"divergences={row.get('divergences', 0)} nonfinite={row.get('nonfinite', 0)}"
            print(f"{script.name:34s} seed {row['seed']}  {status}  {row.get('seconds', float('nan')):6.1f} s  {detail}",
                  flush=True)
        print(f"  ({script.name}: {time.perf_counter() - start:.0f} s in all)", flush=True)
    failed = [r for r in rows if not r["ok"]]
    print(f"\n{len(rows) - len(failed)}/{len(rows)} runs passed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
