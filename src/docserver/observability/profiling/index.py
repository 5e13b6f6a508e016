"""The `/debug/pprof/` page: what can be fetched, and the command to fetch it."""

from __future__ import annotations

from html import escape
from typing import NamedTuple


class Entry(NamedTuple):
    link: str
    name: str
    description: str


ENTRIES = (
    Entry(
        "profile?seconds=30",
        "profile",
        "CPU profile: where the process spends CPU time (threads that "
        "are waiting do not count). ?seconds=N, default 30.",
    ),
    Entry(
        "wall?seconds=30",
        "wall",
        "Wall-clock profile: where every thread spends its time, waiting "
        "included (I/O, locks, an idle event loop). Same as profile?mode=wall.",
    ),
    Entry(
        "heap?seconds=10",
        "heap",
        "Heap profile: memory allocated during the next N seconds (default 10) "
        "and still alive at the end, traced by tracemalloc only for that time. ?gc=1 collects first.",
    ),
    Entry(
        "tasks?debug=1",
        "tasks",
        "Every asyncio task and where it waits; without ?debug=1, a pprof "
        "profile with one sample per stack (like Go's goroutine profile).",
    ),
)


def index_html(max_seconds: int) -> str:
    rows = "\n".join(
        f'<tr><td><a href="{escape(entry.link)}">{escape(entry.name)}</a></td><td>{escape(entry.description)}</td></tr>'
        for entry in ENTRIES
    )
    return f"""<!doctype html>
<html>
<head><meta charset="utf-8"><title>/debug/pprof/</title></head>
<body>
<h1>/debug/pprof/</h1>
<p>Profiles of this docserver process, in pprof format. Profiles run one at a time, up to
{max_seconds} seconds each.</p>
<table>
{rows}
</table>
<p>Read one with <code>go tool pprof http://:TOKEN@HOST:PORT/debug/pprof/profile?seconds=30</code>,
or download it (<code>curl -H "Authorization: Bearer TOKEN"</code>) and open it in speedscope or Pyroscope.</p>
</body>
</html>
"""
