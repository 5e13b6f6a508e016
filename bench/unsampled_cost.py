"""What an unsampled request's tracing costs in process, in instructions, for this tree or another revision's.

    python bench/unsampled_cost.py [--src PATH] [--label NAME]
        [--out bench/results/unsampled_cost.json]

One request's tracing as the layers do it at `OTEL_TRACE_SAMPLE_RATE=0`
(tracing configured by `serve.start_tracing` from the settings, exporter
`none`): the middleware's decision and trace record, the `traceparent`
answered, the two latency histograms' exemplar checks (HTTP and MCP), the
MCP layer's check for a span to continue, the trace ids of the two log lines
(access and tool call), and the end. Run N and 3N times in a fresh
interpreter under `valgrind --tool=callgrind` (PYTHONHASHSEED=0), the
difference over 2N is one request, an empty loop's cost subtracted. `--src`
runs it against another revision's `src/` (e.g. one exported with
`git archive`); the results file keeps one row per label.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import STEADY_COUNTS, callgrind_total, per_call

SETUP = r"""
import sys
from docserver.config import load_settings
from docserver.observability import tracing as t
from docserver.observability.http_trace import ServerSpans
from docserver.serve import start_tracing

spans = ServerSpans(start_tracing(load_settings(), None))

def attributes():
    return {"http.route": "/mcp"}

def request():
    trace = spans.start([], [], [], "POST /mcp", attributes)
    trace.response_headers()
    t.current_exemplar()
    t.sampled_span()
    t.current_trace_ids()
    t.current_exemplar()
    t.current_trace_ids()
    trace.end(200)

operation = request if sys.argv[1] == "request" else (lambda: None)
for _ in range(int(sys.argv[2])):
    operation()
"""
CALLS = (1000, 3000)


def cost(name: str, work: Path, env: dict[str, str]) -> float:
    totals = tuple(callgrind_total([sys.executable, "-c", SETUP, name, str(n)], work, env) for n in CALLS)
    return per_call((totals[0], totals[1]), CALLS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    parser.add_argument("--label", default="this tree")
    parser.add_argument("--out", type=Path, default=Path("bench/results/unsampled_cost.json"))
    args = parser.parse_args()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DOCSERVER_", "LOG_", "OTEL_"))}
    env |= {
        "PYTHONPATH": str(args.src.resolve()),
        **STEADY_COUNTS,
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_TRACE_SAMPLE_RATE": "0",
    }
    work = Path(tempfile.mkdtemp(prefix="docserver-unsampled-cost-"))
    instructions = cost("request", work, env) - cost("loop", work, env)
    rows = json.loads(args.out.read_text()) if args.out.exists() else []
    rows = [row for row in rows if row["label"] != args.label]
    rows.append({"label": args.label, "unsampled_request_tracing_instructions": round(instructions)})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"{args.label}: {instructions / 1000:.1f} k instructions per unsampled request")


if __name__ == "__main__":
    main()
