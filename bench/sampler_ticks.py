"""Instructions per tick of the CPU profile's sampler, this tree's against an older revision's.

    python bench/sampler_ticks.py [--before beeabeb^] [--ticks 100 1100] [--out bench/results/sampler_ticks.json]

A script under `valgrind --tool=callgrind` starts seven parked threads (four executor
workers, one of them 60 frames deep, two threads waiting, and the main thread joining),
then in a thread of its own builds `StackSampler(mode)`, calls `tick()` N times and
`encode()`. The difference of the totals at the two tick counts over the difference of the
ticks is one tick. In cpu mode the parked threads use no CPU, so a tick is its fixed cost
(clocks, thread list); in wall mode every thread's stack is walked. The older revision's
`src/` is exported with `git archive` and put first on `sys.path` instead of this tree's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import callgrind_total, per_call

ROOT = Path(__file__).resolve().parents[1]
MODES = ("cpu", "wall")

TICKS = r"""
import sys, threading
from concurrent.futures import ThreadPoolExecutor
sys.path.insert(0, sys.argv[1])
from docserver.observability.profiling.cpu import StackSampler

mode, ticks = sys.argv[2], int(sys.argv[3])
stop = threading.Event()

def deep(depth):
    return deep(depth - 1) if depth else stop.wait()

pool = ThreadPoolExecutor(4)
pool.submit(deep, 60)
for _ in range(3):
    pool.submit(stop.wait)
waiting = [threading.Thread(target=stop.wait) for _ in range(2)]
for thread in waiting:
    thread.start()

def sample():
    sampler = StackSampler(mode)
    for _ in range(ticks):
        sampler.tick()
    sampler.encode()

sampler_thread = threading.Thread(target=sample)
sampler_thread.start()
sampler_thread.join()
stop.set()
pool.shutdown()
"""


def exported_src(revision: str, folder: Path) -> Path:
    archive = subprocess.run(["git", "archive", revision, "src"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder / "src"


def per_tick(src: Path, mode: str, ticks: tuple[int, int], work: Path) -> float:
    totals = tuple(callgrind_total([sys.executable, "-c", TICKS, str(src), mode, str(n)], work) for n in ticks)
    return per_call((totals[0], totals[1]), ticks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="beeabeb^", help="the older revision")
    parser.add_argument("--ticks", type=int, nargs=2, default=[100, 1100])
    parser.add_argument("--out", type=Path, default=Path("bench/results/sampler_ticks.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="docserver-ticks-"))
    before = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=ROOT, capture_output=True, text=True)
    sources = {f"before ({before.stdout.strip()})": exported_src(args.before, work), "after": ROOT / "src"}
    ticks = (args.ticks[0], args.ticks[1])
    rows = [
        {"mode": mode, "sampler": name, "instructions_per_tick": per_tick(src, mode, ticks, work)}
        for mode in MODES
        for name, src in sources.items()
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"ticks": args.ticks, "rows": rows}, indent=2))
    for row in rows:
        print(f"{row['mode']:<5} {row['sampler']:<20} {row['instructions_per_tick']:>10,.0f} instructions per tick")


if __name__ == "__main__":
    main()
