"""The built package works outside the repository.

`python -m build` makes the sdist and, from it, the wheel (so the sdist is
proven to carry what the wheel needs). The wheel goes into a fresh venv; its
third-party dependencies come from the test interpreter's own site-packages
(a `.pth` line, which does not run that folder's editable-install hook), so
nothing is downloaded and `docserver` itself can only come from the wheel.
Every command then runs from an unrelated folder, with no database URL: the
default location in the user data folder is used.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mcp import Client

from support.processes import free_port, running

ROOT = Path(__file__).resolve().parents[1]
RUN_TIME_FILES = (
    "docserver/store/migrations/sqlite/0001_initial.sql",
    "docserver/store/migrations/postgresql/0001_initial.sql",
    "docserver/evaluation/questions.toml",
    "docserver/evaluation/corpus/carrack/getting-started.md",
    "docserver/sample_docs/configuration.md",
)

pytestmark = pytest.mark.slow


@dataclass
class Installed:
    wheel: Path
    sdist: Path
    venv: Path
    workdir: Path
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.venv / "bin" / "docserver"), *args]
        return subprocess.run(command, cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("package")
    dist = base / "dist"
    build = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)]
    subprocess.run(build, check=True, capture_output=True, timeout=120)
    [wheel], [sdist] = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    _share_dependencies(venv)
    install = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q"]
    subprocess.run([*install, "--no-deps", "--no-index", str(wheel)], check=True, timeout=120)
    workdir = base / "elsewhere"
    workdir.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(base / "home"), "XDG_DATA_HOME": str(base / "data")}
    yield Installed(wheel, sdist, venv, workdir, env)


def _share_dependencies(venv: Path) -> None:
    """Let the new venv import this interpreter's third-party packages (not its editable docserver)."""
    [site_packages] = (venv / "lib").glob("python3*/site-packages")
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site_packages / "test_dependencies.pth").write_text("\n".join(sorted(paths)) + "\n")


def test_the_wheel_carries_every_file_the_commands_read(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    assert set(RUN_TIME_FILES) <= names


def test_the_sdist_carries_the_sources_and_the_sample_docs(installed: Installed) -> None:
    with tarfile.open(installed.sdist) as sdist:
        names = {name.partition("/")[2] for name in sdist.getnames()}
    assert {
        "pyproject.toml",
        "src/docserver/store/migrations/sqlite/0001_initial.sql",
        "docs/configuration.md",
    } <= names


def test_docserver_is_imported_from_the_installed_wheel(installed: Installed) -> None:
    python = installed.venv / "bin" / "python"
    located = subprocess.run(
        [python, "-c", "import docserver; print(docserver.__file__)"],
        cwd=installed.workdir,
        env=installed.env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(located.stdout.strip()).is_relative_to(installed.venv)
    assert installed.run("--version").stdout.strip() == "docserver 0.1.0"


def test_ingest_search_and_reindex_use_the_user_data_folder(installed: Installed) -> None:
    ingested = installed.run("ingest", "--sample")
    assert ingested.returncode == 0, ingested.stderr
    database = Path(installed.env["XDG_DATA_HOME"]) / "docserver" / "docserver.db"
    assert database.is_file()
    assert not list(installed.workdir.iterdir())

    found = installed.run("search", "how do I set the database URL", "--limit", "3")
    assert found.returncode == 0, found.stderr
    assert "[docserver-docs]" in found.stdout

    reindexed = installed.run("reindex", "--force")
    assert reindexed.returncode == 0, reindexed.stderr


def test_eval_reads_the_evaluation_set_from_the_package(installed: Installed) -> None:
    evaluated = installed.run("eval", "--embedders", "hash", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["documents"] > 0
    assert {run["embedder"] for run in report["runs"]} == {"hash"}


async def test_serve_names_the_default_database_and_answers_a_search(
    installed: Installed, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert installed.run("ingest", "--sample").returncode == 0
    monkeypatch.chdir(installed.workdir)
    port = free_port()
    command = [str(installed.venv / "bin" / "docserver"), "serve", "--port", str(port)]
    log_path = installed.workdir.parent / "serve.log"
    url = f"http://127.0.0.1:{port}"
    with running(command, log_path, f"{url}/healthz", installed.env, name="docserver"):
        async with Client(f"{url}/mcp", mode="auto") as client:
            result = await client.call_tool("search_docs", {"query": "how do I set the database URL"})
    assert result.structured_content is not None
    assert result.structured_content["results"]
    database = Path(installed.env["XDG_DATA_HOME"]) / "docserver" / "docserver.db"
    assert f"sqlite:///{database}" in log_path.read_text()
