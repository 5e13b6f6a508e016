"""Every shell and Python example in README.md and docs/ runs, or says why it cannot here.

Sybil finds the fenced `sh` and `python` blocks. A block that cannot run here is preceded
by `<!-- skip: next "reason" -->` (invisible on the site), and the reason is required. The
rest run in document order, as a reader would type them, in a sandbox: a fresh SQLite store
holding this project's docs/, a real `docserver serve` on a free port (every
`http://127.0.0.1:8080` in an example is that server) writing its log to `docserver.jsonl`,
`.venv/bin` and a home folder of its own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import SkipTest

import pytest
from sybil import Example, Sybil
from sybil.parsers.markdown import CodeBlockParser, SkipParser

from support.docserver_process import ServerProcess, docserver_env, run_cli, start_docserver

ROOT = Path(__file__).parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLE_LANGUAGES = ("sh", "python")
DOCUMENTED_SERVER = "http://127.0.0.1:8080"
SKIP = re.compile(r"<!-- skip: next(.*?)-->")
FENCE = re.compile(r"^```(\S*)", re.MULTILINE)


@dataclass
class Sandbox:
    folder: Path
    env: dict[str, str]
    server: ServerProcess

    def localize(self, source: str) -> str:
        return source.replace(DOCUMENTED_SERVER, self.server.url)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    folder = tmp_path_factory.mktemp("reader")
    home = folder / "home"
    shutil.copytree(ROOT / "docs", home / "src" / "myproject" / "docs")
    (folder / ".venv").symlink_to(Path(sys.executable).parents[1])
    venv_bin = str(Path(sys.executable).parent)
    path = venv_bin + os.pathsep + os.environ["PATH"]
    env = docserver_env(folder / "docserver.db", {"HOME": str(home), "PATH": path})
    ingested = run_cli("ingest", str(ROOT / "docs"), "--source", "docserver-docs", env=env)
    assert ingested.returncode == 0, ingested.stderr
    (folder / "embedding-server.jsonl").touch()  # the other service of the merged-logs example: none here
    with start_docserver(env, folder / "docserver.jsonl") as server:
        yield Sandbox(folder, env, server)


def run_shell(sandbox: Sandbox, example: Example) -> None:
    source = sandbox.localize(example.parsed)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", source],
        cwd=sandbox.folder,
        env=sandbox.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"{example}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def run_python(sandbox: Sandbox, example: Example) -> None:
    code = compile(sandbox.localize(example.parsed), str(example.path), "exec")
    exec(code, {"__name__": "__example__"})


def examples_of(path: Path, sandbox: Sandbox) -> Iterator[Example]:
    parsers = [
        SkipParser(),
        CodeBlockParser("sh", lambda example: run_shell(sandbox, example)),
        CodeBlockParser("python", lambda example: run_python(sandbox, example)),
    ]
    yield from Sybil(parsers).parse(path)


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.name)
def test_every_example_runs_or_is_marked(path: Path, sandbox: Sandbox) -> None:
    for example in examples_of(path, sandbox):
        try:
            example.evaluate()
        except SkipTest:
            continue


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.name)
def test_every_skip_says_why(path: Path) -> None:
    for match in SKIP.finditer(path.read_text()):
        assert re.fullmatch(r'\s*"[^"]{10,}"\s*', match.group(1)), f"{path.name}: {match.group(0)} gives no reason"


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.name)
def test_shell_and_python_examples_use_the_collected_languages(path: Path) -> None:
    """`bash`, `console` or `py` fences would escape the runner: examples are `sh` or `python`."""
    languages = set(FENCE.findall(path.read_text()))
    assert not languages & {"bash", "shell", "console", "shell-session", "py", "python3", "pycon"}, languages
