"""Each library alone, in pairs of runs one right after the other, and the ratio within each pair.

On a small or shared machine neither of the other two ways to compare is sound. Interleaving the libraries
in one process (what each script does by default) lets OpenBLAS's idle threads, still spinning after
scratchgen's matrix products, take cores from PyTorch's step; and two ``--only`` runs minutes apart see a
machine whose speed has drifted in between (docs/benchmarks.md shows both). This script runs a benchmark
script with ``--only scratchgen`` and then ``--only pytorch`` (or the other way round: the order
alternates from pair to pair), each in a process of its own, reads their times from ``--times-json``, and
gives for every step each library's median step time per run and the ratio scratchgen / PyTorch within
each pair: their range and their median. With ``--floor`` each round also runs the script's step written
by hand in NumPy (``--only numpy``: the MLP and the DCGAN discriminator have one), and gives its ratio to
PyTorch's and scratchgen's ratio to it within each round: how far NumPy itself is from PyTorch, and how
far scratchgen is from NumPy.

    python benchmarks/pairs.py bench_dcgan.py --pairs 6
    python benchmarks/pairs.py bench_dcgan.py --pairs 6 --floor
    python benchmarks/pairs.py bench_conv.py --pairs 4 -- --threads 2 --steps pixelcnn

Arguments after ``--`` go to the benchmark script. PyTorch must be installed (scratchgen never needs it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import require_torch  # noqa: E402
SCRIPTS = ("bench_mlp.py", "bench_dcgan.py", "bench_conv.py")
WITH_FLOOR = ("bench_mlp.py", "bench_dcgan.py")  # the scripts with a hand-written NumPy step


def run_alone(script: str, library: str, extra: list[str]) -> dict:
    """{step: median ms} of one ``--only library`` run of ``script``; exits with its output if it fails."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "times.json"
        command = [sys.executable, str(HERE / script), "--only", library, "--times-json", str(path), *extra]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not path.exists():
            sys.exit(f"{' '.join(command)} failed (exit status {done.returncode}):\n{done.stdout}{done.stderr}")
        rows = json.loads(path.read_text())
    return {row["step"]: row["median_ms"] for row in rows}


def pair_ratios(ours: list[dict], theirs: list[dict]) -> dict:
    """{step: [ours / theirs in each pair]} from two contenders' runs, pair by pair, for the steps both ran."""
    steps = [step for step in ours[0] if step in theirs[0]]
    return {step: [mine[step] / other[step] for mine, other in zip(ours, theirs)] for step in steps}


def spread(values: list[float]) -> str:
    """'low–high (median)' of ``values``."""
    return f"{min(values):.2f}–{max(values):.2f} ({statistics.median(values):.2f})"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     usage="%(prog)s SCRIPT [--pairs N] [-- SCRIPT'S ARGUMENTS]")
    parser.add_argument("script", choices=SCRIPTS, help="the benchmark to run")
    parser.add_argument("--pairs", type=int, default=6,
                        help="rounds of runs, one run of each contender per round (default 6)")
    parser.add_argument("--floor", action="store_true",
                        help="also run the hand-written NumPy step in each round (bench_mlp.py, bench_dcgan.py)")
    argv = sys.argv[1:] if argv is None else list(argv)
    # Everything after "--" is the benchmark script's.
    own, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    args = parser.parse_args(own)
    if args.pairs < 1:
        parser.error(f"--pairs must be at least 1, got {args.pairs}")
    if args.floor and args.script not in WITH_FLOOR:
        parser.error(f"--floor: {args.script} has no hand-written NumPy step "
                     f"(those that do: {', '.join(WITH_FLOOR)})")

    require_torch(threads=1)  # exits, saying how to install it, where PyTorch is missing

    contenders = ["scratchgen", "pytorch"] + (["numpy"] if args.floor else [])
    runs = {library: [] for library in contenders}
    started = time.strftime("%Y-%m-%d %H:%M")
    for i in range(args.pairs):
        turn = i % len(contenders)  # which contender runs first moves round by round
        order = contenders[turn:] + contenders[:turn]
        for library in order:
            runs[library].append(run_alone(args.script, library, extra))
        print(f"  round {i + 1}/{args.pairs} done ({order[0]} first)", file=sys.stderr)

    ratios = pair_ratios(runs["scratchgen"], runs["pytorch"])
    print(f"{' '.join([args.script, *extra])}: each contender alone, {args.pairs} rounds of runs, turning "
          f"which runs first, from {started}")
    print(f"  {'step':<14} {'scratchgen ms':>22} {'PyTorch ms':>22} {'scratchgen / PyTorch':>22}   each round")
    for step, values in ratios.items():
        ours = spread([run[step] for run in runs["scratchgen"]])
        theirs = spread([run[step] for run in runs["pytorch"]])
        print(f"  {step:<14} {ours:>22} {theirs:>22} {spread(values):>22}   "
              + " ".join(f"{value:.2f}" for value in values))
    if args.floor:
        floor_ratios = pair_ratios(runs["numpy"], runs["pytorch"])
        from_floor = pair_ratios(runs["scratchgen"], runs["numpy"])
        print(f"  {'step':<14} {'hand NumPy ms':>22} {'hand NumPy / PyTorch':>22} {'scratchgen / hand NumPy':>24}")
        for step, values in floor_ratios.items():
            floor = spread([run[step] for run in runs["numpy"]])
            print(f"  {step:<14} {floor:>22} {spread(values):>22} {spread(from_floor[step]):>24}")
    print("  (ranges over the runs, medians in parentheses)")


if __name__ == "__main__":
    main()
