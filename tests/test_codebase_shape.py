"""Guards on the shape of the code base: module size, private reads, where settings come from, no outside citations."""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "docserver"
MAX_MODULE_LINES = 500
# Modules that adapt a third-party library and may read its private attributes: each pins the
# version it was written against and is checked by tests/test_sdk_contracts.py. The profiler
# reads CPython's own frame functions (sys._current_frames, sys._getframe), documented in `sys`.
ADAPTER_MODULES = {
    "mcp/sdk.py",
    "observability/otlp_exporter.py",
    "observability/profiling/cpu.py",
    "observability/profiling/stacks.py",
}
# Public API that happens to start with an underscore (namedtuple's methods).
PUBLIC_UNDERSCORE_NAMES = {"_replace", "_asdict", "_fields", "_field_defaults", "_make"}
# Settings are read once, at the edge: the config package (and cli.py, which starts everything).
ENVIRONMENT_READERS = {"config/environment.py", "cli.py"}
# Writing os.environ to configure a third-party library (the local model's Hugging Face
# defaults) is not reading a setting.
ENVIRONMENT_WRITES = {"setdefault"}
# Documents from outside the repository; spelled as a pattern so that this file does not cite them.
OUTSIDE_DOCUMENTS = re.compile(r"\b(?:DESIGN|REFERENCE)\.md\b|\.\./shared\b")
# The folders .gitignore leaves out, and git's own.
UNTRACKED = {
    ".git",
    ".venv",
    "node_modules",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    "build",
    "dist",
}


def modules() -> Iterator[Path]:
    return iter(sorted(SRC.rglob("*.py")))


def relative(path: Path) -> str:
    return str(path.relative_to(SRC))


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def findings(check: Callable[[ast.Module], Iterator[tuple[int, str]]], *, exempt: set[str]) -> list[str]:
    """`module:line: expression` for what `check` finds in every module of src/ but the `exempt` ones."""
    return [
        f"{relative(path)}:{line}: {expression}"
        for path in modules()
        if relative(path) not in exempt
        for line, expression in check(parse(path))
    ]


def test_every_module_in_src_is_under_500_lines() -> None:
    sizes = {relative(path): len(path.read_text().splitlines()) for path in modules()}
    assert {name: lines for name, lines in sizes.items() if lines >= MAX_MODULE_LINES} == {}


def docserver_module_names(tree: ast.Module) -> set[str]:
    """Names the module binds to docserver's own modules (`from docserver.x import y`, `import docserver.x as y`)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.asname or alias.name for alias in node.names if alias.name.startswith("docserver")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("docserver"):
            names |= {alias.asname or alias.name for alias in node.names}
    return names


def private_reads(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """`x._name` where x is not self, cls or one of docserver's own modules."""
    own = {"self", "cls"} | docserver_module_names(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not re.fullmatch(r"_[^_].*", node.attr):
            continue
        if node.attr in PUBLIC_UNDERSCORE_NAMES:
            continue
        if isinstance(node.value, ast.Name) and node.value.id in own:
            continue
        yield node.lineno, f"{ast.unparse(node.value)}.{node.attr}"


def test_no_private_attributes_of_other_objects_are_read_outside_adapter_modules() -> None:
    assert findings(private_reads, exempt=ADAPTER_MODULES) == []


def environment_reads(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """os.environ / os.getenv uses other than the writes of ENVIRONMENT_WRITES."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            names = {alias.name for alias in node.names} & {"environ", "getenv", "environb", "getenvb"}
            if names:
                yield node.lineno, f"from os import {', '.join(sorted(names))}"
        if not (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in {"environ", "getenv", "environb", "getenvb"}
        ):
            continue
        parent = parents.get(node)
        if isinstance(parent, ast.Attribute) and parent.attr in ENVIRONMENT_WRITES:
            continue
        if isinstance(parent, ast.Subscript) and isinstance(parent.ctx, ast.Store):
            continue
        yield node.lineno, ast.unparse(parent if parent is not None else node)


def test_only_the_configuration_reads_the_environment() -> None:
    assert findings(environment_reads, exempt=ENVIRONMENT_READERS) == []


def tracked_files() -> Iterator[Path]:
    """Every file of the work tree but what .gitignore leaves out (a checkout may have no git)."""
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in UNTRACKED and not name.endswith(".egg-info")]
        for name in files:
            path = Path(folder, name)
            if not (path.suffix == ".pyc" or (path.parent == ROOT and name.startswith("docserver.db"))):
                yield path


def test_no_tracked_file_cites_documents_from_outside_the_repository() -> None:
    citing = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in tracked_files()
        for number, line in enumerate(path.read_text(errors="ignore").splitlines(), 1)
        if OUTSIDE_DOCUMENTS.search(line)
    ]
    assert citing == []
