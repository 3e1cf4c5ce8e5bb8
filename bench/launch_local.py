"""Run one ``diffbio-prob`` command as a job of N processes on this machine.

Not a test. Each process is ``python -m diffbio_prob COMMAND ... --coordinator 127.0.0.1:PORT
--num-processes N --process-id I`` (a free port; on CPU the processes talk through gloo), so the sharded
programs of ``de``, ``quant`` and ``hmm`` span the N processes' devices and process 0 alone writes the
outputs. This is what ``srun`` / ``mpirun`` do on a cluster (there the flags are not needed: the command
reads the job from the environment); use it to try a job on one machine.

Waits for every process; when one fails, the others are stopped (they would wait for it in the next
collective). Exit code: process 0's when it is not 0, else the first other process's that is not 0, else 0.

Run:  .venv/bin/python bench/launch_local.py -n 2 [--timeout S] [--one-gpu-each] -- \\
          diffbio-prob de --counts counts.csv --metadata meta.csv --design "~condition" --out r.csv
      (the leading ``diffbio-prob`` is optional)
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

__all__ = ["launch", "free_port", "main"]

_JOB_FLAGS = ("--coordinator", "--num-processes", "--process-id")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(command: list[str], num_processes: int, *, timeout: float | None = None, env: dict | None = None,
           one_gpu_each: bool = False, python: str = sys.executable) -> int:
    """Run ``diffbio-prob *command`` in ``num_processes`` local processes as one job; returns the exit code.

    Args:
        command: the subcommand and its arguments (``["de", "--counts", ...]``); a leading ``diffbio-prob``
            is dropped. It must not carry the job flags (they are added here).
        num_processes: N >= 1.
        timeout: seconds for the whole job; after it every process is stopped and the code is 124.
        env: the processes' environment (default this one's).
        one_gpu_each: process I sees GPU I only (``CUDA_VISIBLE_DEVICES=I``); otherwise every process sees
            what this one sees (on CPU, each process its own CPU device).
        python: the interpreter that runs ``-m diffbio_prob``.
    """
    command = [str(c) for c in command]
    if command and os.path.basename(command[0]) == "diffbio-prob":
        command = command[1:]
    if not command:
        raise ValueError("command: expected a diffbio-prob subcommand and its arguments")
    given = [f for f in _JOB_FLAGS if any(c == f or c.startswith(f + "=") for c in command)]
    if given:
        raise ValueError(f"command: {', '.join(given)} given; the launcher sets the job flags itself")
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
        raise ValueError(f"num_processes: expected a positive integer, got {num_processes!r}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout: expected a positive number of seconds, got {timeout!r}")
    coordinator = f"127.0.0.1:{free_port()}"
    base = dict(os.environ if env is None else env)
    procs = []
    for i in range(num_processes):
        penv = dict(base, CUDA_VISIBLE_DEVICES=str(i)) if one_gpu_each else base
        flags = ["--coordinator", coordinator, "--num-processes", str(num_processes), "--process-id", str(i)]
        procs.append(subprocess.Popen([python, "-m", "diffbio_prob", *command, *flags], env=penv))
    deadline = None if timeout is None else time.monotonic() + timeout
    codes: list[int | None] = [None] * num_processes
    timed_out = False
    try:
        while any(c is None for c in codes):
            for i, p in enumerate(procs):
                if codes[i] is None:
                    codes[i] = p.poll()
            if any(c not in (None, 0) for c in codes):
                break  # the others would wait for the failed one in their next collective
            if deadline is not None and time.monotonic() > deadline:
                timed_out = True
                break
            time.sleep(0.05)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for i, p in enumerate(procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if codes[i] is None:
                codes[i] = p.returncode
    if timed_out:
        print(f"launch_local: the job ran past {timeout:g} s; stopped", file=sys.stderr)
        return 124
    for i, c in enumerate(codes):
        if c:
            print(f"launch_local: process {i} exited with {c}", file=sys.stderr)
    # in rank order, process 0 first: the failures that were the processes' own (a code > 0); a negative
    # code is a signal, ours when another process had failed first
    own = [c for c in codes if c is not None and c > 0]
    if own:
        return own[0]
    signals = [c for c in codes if c]
    return 128 - signals[0] if signals else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     usage="launch_local.py -n N [--timeout S] [--one-gpu-each] -- diffbio-prob ...")
    parser.add_argument("-n", "--num-processes", type=int, required=True, help="how many processes")
    parser.add_argument("--timeout", type=float, default=None, help="seconds for the whole job (default none)")
    parser.add_argument("--one-gpu-each", action="store_true", help="process I sees GPU I only")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the diffbio-prob command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        return launch(command, args.num_processes, timeout=args.timeout, one_gpu_each=args.one_gpu_each)
    except ValueError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    sys.exit(main())
