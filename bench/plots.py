"""The plots of docs/performance.md, from the JSON the benchmarks wrote.

python bench/plots.py [--results bench/results] [--out docs/img]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def overhead_plot(results: Path, out: Path) -> None:
    table = json.loads((results / "overhead.json").read_text())["table"]
    names = [row["configuration"] for row in table]
    values = [row["cpu_overhead_pct"] for row in table]
    goals = {"metrics+logs": 3, "+tracing 0.1": 5, "+tracing 1.0": 15, "+cpu profile": 5}
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
    bars = ax.bar(names, values, color=["#888888", "#4c78a8", "#4c78a8", "#f58518", "#54a24b"][: len(names)])
    for bar, name in zip(bars, names, strict=True):
        if name in goals:
            ax.hlines(goals[name], bar.get_x(), bar.get_x() + bar.get_width(), colors="#d62728", linestyles="--")
        ax.annotate(
            f"{bar.get_height():+.1f}%",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylabel("server CPU per call vs off (%)")
    ax.set_title("Observability overhead, search_docs (red dashes: goals)")
    ax.axhline(0, color="black", linewidth=0.6)
    fig.tight_layout()
    fig.savefig(out / "overhead.png")


def scale_plot(results: Path, out: Path) -> None:
    rows = json.loads((results / "search_scale.json").read_text())
    extra = results / "postgres_scale.json"
    if extra.exists():
        # bench/postgres_scale.py times SearchService in process (no MCP, no HTTP).
        rows += [
            {
                "backend": "postgresql (in process)",
                "size": r["chunks"],
                "cache": "off",
                "p50_ms": r["chosen"]["search_newest_p50_ms"],
                "p95_ms": r["chosen"]["search_newest_p95_ms"],
            }
            for r in json.loads(extra.read_text())["rows"]
            if "chosen" in r
        ]
    real_docs = results / "search_scale_real_docs.json"
    if real_docs.exists():
        # Copies of Python's docs (bench/replicate.py); `vector`: both retrievers, as with local/openai.
        rows += [
            r | {"backend": f"sqlite real docs, {'vector search' if r['search'] == 'vector' else 'default'}"}
            for r in json.loads(real_docs.read_text())
        ]
    million = results / "search_scale_million.json"
    if million.exists():
        # The synthetic corpus ingested at 100,000 and 1,000,000 chunks (the vector rows: the current probe share).
        rows += [
            r | {"backend": f"sqlite synthetic, {'vector search' if r['search'] == 'vector' else 'default'}"}
            for r in json.loads(million.read_text())
            if "before" not in r.get("note", "")
        ]
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
    series = [(b, c) for b in sorted({row["backend"] for row in rows}) for c in ("off", "on")]
    series = [(b, c) for b, c in series if any(r["backend"] == b and r["cache"] == c for r in rows)]
    colors = dict(zip(series, plt.get_cmap("tab10").colors, strict=False))
    for backend in sorted({row["backend"] for row in rows}):
        for cache in ("off", "on"):
            points = sorted(
                (r["size"], r["p50_ms"], r["p95_ms"]) for r in rows if r["backend"] == backend and r["cache"] == cache
            )
            if not points:
                continue
            sizes = [p[0] for p in points]
            style = "-" if cache == "off" else ":"
            color = colors[(backend, cache)]
            ax.plot(
                sizes, [p[1] for p in points], style, marker="o", color=color, label=f"{backend}, cache {cache}, p50"
            )
            ax.plot(sizes, [p[2] for p in points], style, marker="^", alpha=0.5, color=color, label="p95")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("chunks in the corpus")
    ax.set_ylabel("search_docs latency (ms)")
    ax.set_title("Search latency against corpus size (one connection)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "search_latency.png")


def hnsw_plot(results: Path, out: Path) -> None:
    """Recall@10 against vector-search p95 for each hnsw.ef_search, per corpus size and filter."""
    rows = [row for row in json.loads((results / "postgres_scale.json").read_text())["rows"] if "curve" in row]
    products = results / "postgres_scale_products.json"
    if products.exists():  # distinct products (bench/replicated_docs.py PRODUCTS), 5 versions each
        rows += json.loads(products.read_text())["rows"]
    filters = {"none": "no filter", "newest": "newest versions", "source": "one source", "version": "one version"}
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for row, style in zip(rows, ("--", "-", "-."), strict=False):
        for (name, label), color in zip(filters.items(), ("#4c78a8", "#f58518", "#54a24b", "#b279a2"), strict=True):
            curve = row["curve"]
            ax.plot(
                [point[f"vector_{name}_p95_ms"] for point in curve],
                [point[f"recall_{name}"] for point in curve],
                style,
                marker="o",
                markersize=3,
                color=color,
                label=f"{row['chunks']:,} chunks{', products' if row.get('corpus') == 'products' else ''}, {label}",
            )
            for point in curve if row is rows[1] and name == "newest" else []:
                ax.annotate(
                    str(point["ef_search"]), (point[f"vector_{name}_p95_ms"], point[f"recall_{name}"]), fontsize=6
                )
    before = results / "postgres_scale_vectors_on_chunks.json"
    if before.exists():  # the same 1,000,000 chunks with a vector in every chunk's row (45 copies of each)
        for row in json.loads(before.read_text())["rows"]:
            if row["chunks"] < 1_000_000:
                continue
            for name, marker in (("none", "x"), ("source", "+")):
                ax.plot(
                    [point[f"vector_{name}_p95_ms"] for point in row["curve"]],
                    [point[f"recall_{name}"] for point in row["curve"]],
                    ":",
                    marker=marker,
                    markersize=4,
                    color="grey",
                    label=f"before: vectors on every chunk, {row['chunks']:,}, {filters[name]}",
                )
    ax.axhline(0.95, color="#d62728", linestyle="--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("vector search p95 (ms, 80 candidates)")
    ax.set_ylabel("recall@10 against an exact scan")
    ax.set_title("pgvector HNSW over the distinct vectors: recall against speed, a point per ef_search", fontsize=9)
    ax.legend(fontsize=5, loc="lower right", ncol=2)
    fig.tight_layout()
    fig.savefig(out / "hnsw_recall.png")


def recall_plot(results: Path, out: Path) -> None:
    """SQLite's approximate vector index: recall@10 and latency against the share of the lists a search reads."""
    rows = json.loads((results / "vector_index.json").read_text())
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.6), dpi=120)
    for corpus, size in sorted({(r["corpus"], r["size"]) for r in rows}):
        chosen = [r for r in rows if (r["corpus"], r["size"]) == (corpus, size)]
        points = sorted(chosen, key=lambda r: r["probe_share"])
        shares = [r["probe_share"] * 100 for r in points]
        label = f"{corpus}, {size:,}"
        line = left.plot(shares, [r["recall_real"] for r in points], marker="o", label=f"{label}, real queries")
        color = line[0].get_color()
        left.plot(shares, [r["recall_at_10"] for r in points], ":", marker=".", color=color, label=f"{label}, all")
        right.plot(shares, [r["index_p50_ms"] for r in points], marker="o", color=color, label=f"{label}, lists")
        right.axhline(points[0]["exact_p50_ms"], color=color, linestyle="--", linewidth=0.8)
    left.axhline(0.95, color="#d62728", linestyle="--", linewidth=0.8)
    left.set_xlabel("share of the lists read (%)")
    left.set_ylabel("recall@10 against exact")
    left.legend(fontsize=6)
    right.set_yscale("log")
    right.set_xlabel("share of the lists read (%)")
    right.set_ylabel("p50 ms (dashed: exact scan)")
    right.legend(fontsize=6)
    fig.suptitle("SQLite approximate vector index (bench/vector_index.py)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "vector_recall.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=Path("bench/results"))
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    overhead_plot(args.results, args.out)
    scale_plot(args.results, args.out)
    hnsw_plot(args.results, args.out)
    recall_plot(args.results, args.out)


if __name__ == "__main__":
    main()
