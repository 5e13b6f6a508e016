"""Observability overhead of two source trees, measured in the same rounds.

    python bench/overhead_trees.py --tree before=/tmp/before/src --tree after=src
        [--configs off metrics+logs "+tracing 1.0"] [--chunks 10000] [--rounds 12] [--calls 600]
        [--out bench/results/overhead_trees.json]

bench/overhead.py compares configurations of one tree, and two trees only in
separate runs, minutes apart. On a machine whose speed drifts between rounds
(a shared host), the same configuration of the same tree can differ by 10-40%
from one run to the next, more than a change is worth. Here each round starts
one server per (tree, configuration), in an order shuffled per round (fixed
seed), with the same database and load, so both trees meet the same drift; each
tree's overhead is the median over rounds of its configuration against its own
"off" in that round, and the trees are compared round by round as well. Every
server runs with one BLAS thread and one string-hash seed (harness.STEADY_COUNTS):
one process otherwise differs from the next by its hash collisions and by an
OpenBLAS worker that spins for a while after its work.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import STEADY_COUNTS, build_database, docserver_env, fresh_copy, measure, serve, trace_sink
from overhead import CONFIGS


def run(args: argparse.Namespace, trees: dict[str, Path]) -> dict[str, dict[str, list[float]]]:
    """Server CPU µs per call, by tree, then configuration, one value per round."""
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="docserver-bench-"))
    template, queries = build_database(work, args.chunks)
    cpu: dict[str, dict[str, list[float]]] = {tree: {name: [] for name in args.configs} for tree in trees}
    with trace_sink() as sink:
        for round_number in range(args.rounds):
            order = [(tree, name) for tree in trees for name in args.configs]
            rng.shuffle(order)
            for tree, name in order:
                settings = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "DOCSERVER_CACHE_SIZE": "0", **CONFIGS[name]}
                env = {
                    **docserver_env(fresh_copy(template, work, "run"), settings),
                    **STEADY_COUNTS,
                    "PYTHONPATH": str(trees[tree]),
                }
                with serve(env, work / "serve.log") as server:
                    row = measure(
                        server, queries, calls=args.calls, concurrency=args.concurrency, seed=args.seed + round_number
                    )
                cpu[tree][name].append(row["cpu_us_per_call"])
                value = row["cpu_us_per_call"]
                print(f"round {round_number + 1} {tree:>8} {name:>14}: {value:.0f} µs/call", flush=True)
    return cpu


def summarise(cpu: dict[str, dict[str, list[float]]]) -> list[dict[str, object]]:
    """Per tree and configuration: median µs per call, the median over rounds of the ratio to the
    tree's own off, and the median over rounds of the ratio to the first tree's same configuration."""
    first = next(iter(cpu.values()))
    table = []
    for tree, configs in cpu.items():
        for name, values in configs.items():
            ratios = [value / off for value, off in zip(values, configs["off"], strict=True)]
            against_first = [value / other for value, other in zip(values, first[name], strict=True)]
            table.append(
                {
                    "tree": tree,
                    "configuration": name,
                    "cpu_us_per_call": statistics.median(values),
                    "cpu_overhead_pct": (statistics.median(ratios) - 1) * 100,
                    "by_round_pct": [round((ratio - 1) * 100, 1) for ratio in ratios],
                    "vs_first_tree_pct": (statistics.median(against_first) - 1) * 100,
                }
            )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", required=True, help="label=path of a tree's src folder")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["off", "metrics+logs", "+tracing 1.0"])
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path("bench/results/overhead_trees.json"))
    args = parser.parse_args()
    if "off" not in args.configs:
        parser.error('--configs must include "off": each overhead is against it')
    trees = {label: Path(path).resolve() for label, _, path in (tree.partition("=") for tree in args.tree)}
    cpu = run(args, trees)
    table = summarise(cpu)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    config = {**vars(args), "out": str(args.out)}
    args.out.write_text(json.dumps({"config": config, "cpu": cpu, "table": table}, indent=2))
    print("| tree | configuration | server CPU µs/call | CPU overhead | against the first tree |")
    print("|---|---|---|---|---|")
    for row in table:
        print(
            f"| {row['tree']} | {row['configuration']} | {row['cpu_us_per_call']:.0f} "
            f"| {row['cpu_overhead_pct']:+.1f}% | {row['vs_first_tree_pct']:+.1f}% |"
        )


if __name__ == "__main__":
    main()
