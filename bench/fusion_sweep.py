"""Choose the fusion by measurement: every candidate weighting on the evaluation set, per embedder.

    python bench/fusion_sweep.py [--embedders hash local]

For each embedder: BM25 alone, vectors alone, and weighted reciprocal-rank
fusion over a grid of weights and k, scored as `docserver eval` scores
(hit@1, hit@3, MRR by answer file; easy and paraphrase questions apart).
docs/search.md shows the table and the choice; bench/results/fusion_sweep.json
keeps every row.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
from pathlib import Path

from docserver.config import load_settings
from docserver.evaluation.runner import evaluate
from docserver.observability.logging import configure_logging
from docserver.search import Fusion

TEXT_WEIGHTS = (1.0,)
VECTOR_WEIGHTS = (0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)
KS = (10, 30, 60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embedders", nargs="+", default=["hash", "local"])
    parser.add_argument("--out", type=Path, default=Path("bench/results/fusion_sweep.json"))
    args = parser.parse_args()
    configure_logging(level="WARNING", log_format="console", service_name="bench", environment="bench")
    grid = [Fusion(t, v, k) for t, v, k in itertools.product(TEXT_WEIGHTS, VECTOR_WEIGHTS, KS)]
    report = asyncio.run(evaluate(load_settings(), args.embedders, fusions=grid))
    result = report.as_dict()
    header = ("all@1", "all@3", "MRR", "easy@3", "para@1", "para@3")
    print(f"{'embedder':<8} {'ranking':<34} " + " ".join(f"{name:>7}" for name in header))
    for run in result["runs"]:
        s = run["scores"]
        print(
            f"{run['embedder']:<8} {run['fusion']:<34} {s['all']['hit@1']:>6.1%} {s['all']['hit@3']:>6.1%} "
            f"{s['all']['mrr']:>6.3f} {s['easy']['hit@3']:>7.1%} {s['paraphrase']['hit@1']:>7.1%} "
            f"{s['paraphrase']['hit@3']:>7.1%}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
