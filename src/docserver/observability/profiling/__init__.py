"""pprof-compatible profiling of the running process: CPU, wall clock, heap, asyncio tasks.

Mount `profiling_routes(settings)` in an app. Off by default: with
ENABLE_PROFILING unset it returns no routes, and nothing here runs (no
sampler thread, no tracemalloc) until an authenticated request asks.
See docs/profiling.md.
"""

from docserver.observability.profiling.endpoints import profiling_routes

__all__ = ["profiling_routes"]
