"""Whether two source trees chunk the same HTML pages the same: the chunks, and the parsed lines.

    python bench/html_chunks_compare.py --trees /tmp/before/src src --labels 61864b0 after [--roots DIR ...] \
        [--every-rust 25] [--out bench/results/html_chunks_compare.json]

Each tree (a `src` folder; an older commit: `git archive COMMIT src | tar -x -C /tmp/before`)
chunks every `.html`/`.htm` page under the roots in a process of its own, as
`docserver ingest` does (chunk_document, default cap), and parses it
(docserver.ingest.formats.parse). The counts say on how many pages the chunks
differ, on how many the parsed lines, line numbers, headings or title differ,
and on how many only the line numbers of blank lines differ (no chunk shows
those). Default roots: Python's and PostgreSQL's manuals, Debian's other HTML
docs, npm's, and every 25th page of Rust's (rustup's toolchain), where present.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUST = Path.home() / ".rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc"
DEFAULT_ROOTS = [Path("/usr/share/doc"), Path("/usr/lib/node_modules/npm")]

READ = r"""
import pickle, sys
from pathlib import Path
from docserver.ingest.chunk import chunk_document
from docserver.ingest.discover import UnreadableFileError, read_text
from docserver.ingest.formats import parse

results = {}
for name in Path(sys.argv[1]).read_text().splitlines():
    try:
        text = read_text(Path(name))
    except UnreadableFileError:
        continue
    parsed = parse(text, Path(name).suffix)
    lines = (list(parsed.lines), list(parsed.starts), list(parsed.ends), list(parsed.headings), parsed.title)
    results[name] = (lines, chunk_document(text, Path(name).suffix))
pickle.dump(results, open(sys.argv[2], "wb"))
"""


def pages(roots: list[Path], every_rust: int) -> list[str]:
    found = sorted(
        {str(p) for root in roots if root.is_dir() for p in root.rglob("*") if p.suffix in (".html", ".htm")}
    )
    if every_rust and RUST.is_dir():
        found += sorted(str(p) for p in RUST.rglob("*.html"))[::every_rust]
    return [name for name in found if Path(name).is_file()]


def read_with(tree: Path, listing: Path, out: Path) -> dict[str, tuple[object, object]]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, "-c", READ, str(listing), str(out)], env=env, check=True)
    with out.open("rb") as stream:
        results: dict[str, tuple[object, object]] = pickle.load(stream)
    return results


def blank_numbers_only(before: tuple[list, ...], after: tuple[list, ...]) -> bool:  # type: ignore[type-arg]
    """Same lines, headings and title, and the same numbers for every non-blank line."""
    lines, starts, ends, headings, title = before
    if (after[0], after[3], after[4]) != (lines, headings, title):
        return False
    kept = [i for i, line in enumerate(lines) if line]
    return all(after[1][i] == starts[i] and after[2][i] == ends[i] for i in kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trees", nargs=2, required=True, metavar=("BEFORE", "AFTER"), help="src folders")
    parser.add_argument("--labels", nargs=2, default=["before", "after"], help="what the trees are, for the results")
    parser.add_argument("--roots", nargs="+", type=Path, default=DEFAULT_ROOTS)
    parser.add_argument("--every-rust", type=int, default=25, help="every k-th page of Rust's docs (0: none)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/html_chunks_compare.json")
    args = parser.parse_args()
    names = pages(args.roots, args.every_rust)
    with tempfile.TemporaryDirectory() as folder:
        listing = Path(folder) / "pages.txt"
        listing.write_text("\n".join(names))
        before = read_with(Path(args.trees[0]).resolve(), listing, Path(folder) / "before.pickle")
        after = read_with(Path(args.trees[1]).resolve(), listing, Path(folder) / "after.pickle")
    chunks_differ = [name for name in before if before[name][1] != after[name][1]]
    parsed_differ = [name for name in before if before[name][0] != after[name][0]]
    blank_only = [name for name in parsed_differ if blank_numbers_only(before[name][0], after[name][0])]  # type: ignore[arg-type]
    result = {
        "trees": args.labels,
        "pages": len(before),
        "chunks_differ": len(chunks_differ),
        "parsed_differ": len(parsed_differ),
        "parsed_differ_in_blank_line_numbers_only": len(blank_only),
        "examples": {"chunks": chunks_differ[:10], "parsed": [n for n in parsed_differ if n not in blank_only][:10]},
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
