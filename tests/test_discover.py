from __future__ import annotations

import os
from pathlib import Path

import pytest

from docserver.errors import IngestError
from docserver.ingest import discover as discover_module
from docserver.ingest.discover import (
    SUPPORTED_SUFFIXES,
    DiscoveryResult,
    SkippedPath,
    UnreadableFileError,
    discover,
    read_text,
)


def write(root: Path, relpath: str, text: str = "text\n") -> Path:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def paths(result: DiscoveryResult) -> list[str]:
    return [file.path for file in result.files]


def test_supported_suffixes_are_the_documentation_formats() -> None:
    assert {".md", ".mdx", ".rst", ".txt", ".html", ".htm"} == SUPPORTED_SUFFIXES


def test_only_supported_suffixes_are_found_case_insensitively(tmp_path: Path) -> None:
    for name in ["a.md", "b.MDX", "c.rst", "d.txt", "e.HTML", "f.htm", "g.py", "h.pdf", "README", "i.md.bak"]:
        write(tmp_path, name)
    assert paths(discover(tmp_path)) == ["a.md", "b.MDX", "c.rst", "d.txt", "e.HTML", "f.htm"]


def test_files_are_sorted_by_relative_posix_path(tmp_path: Path) -> None:
    for name in ["z.md", "guide/intro.md", "guide/advanced/deep.md", "a.md"]:
        write(tmp_path, name)
    assert paths(discover(tmp_path)) == ["a.md", "guide/advanced/deep.md", "guide/intro.md", "z.md"]


def test_abspath_points_at_the_file(tmp_path: Path) -> None:
    written = write(tmp_path, "guide/intro.md", "# Intro\n")
    [found] = discover(tmp_path).files
    assert found.abspath.is_absolute()
    assert found.abspath.samefile(written)


def test_hidden_files_and_folders_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, ".hidden.md")
    write(tmp_path, ".git/notes.md")
    write(tmp_path, "docs/.draft/wip.md")
    write(tmp_path, "docs/visible.md")
    assert paths(discover(tmp_path)) == ["docs/visible.md"]


@pytest.mark.parametrize(
    "folder",
    [
        "node_modules",
        "vendor",
        "third_party",
        "site-packages",
        "__pycache__",
        "venv",
        "dist",
        "build",
        "_build",
        "target",
    ],
)
def test_vendored_and_generated_folders_are_skipped(tmp_path: Path, folder: str) -> None:
    write(tmp_path, f"{folder}/readme.md")
    write(tmp_path, f"docs/{folder}/nested.md")
    write(tmp_path, "index.md")
    assert paths(discover(tmp_path)) == ["index.md"]


def test_a_hidden_or_vendored_root_is_still_walked(tmp_path: Path) -> None:
    write(tmp_path, ".docs/build/page.md")
    assert paths(discover(tmp_path / ".docs" / "build")) == ["page.md"]


def test_symlinked_file_outside_the_tree_is_skipped_and_reported(tmp_path: Path) -> None:
    outside = write(tmp_path, "outside/secret.md")
    root = tmp_path / "root"
    write(root, "inside.md")
    (root / "leak.md").symlink_to(outside)
    result = discover(root)
    assert paths(result) == ["inside.md"]
    assert result.skipped == (SkippedPath("leak.md", "symlink points outside the folder"),)


def test_symlinked_folder_outside_the_tree_is_skipped_and_reported(tmp_path: Path) -> None:
    write(tmp_path, "outside/secret.md")
    root = tmp_path / "root"
    write(root, "inside.md")
    (root / "linked").symlink_to(tmp_path / "outside", target_is_directory=True)
    result = discover(root)
    assert paths(result) == ["inside.md"]
    assert result.skipped == (SkippedPath("linked", "symlink points outside the folder"),)


def test_symlink_to_a_sibling_with_a_shared_name_prefix_is_outside(tmp_path: Path) -> None:
    # "/x/docs-private" starts with the string "/x/docs" but is not inside it.
    outside = write(tmp_path, "docs-private/secret.md")
    root = tmp_path / "docs"
    write(root, "inside.md")
    (root / "leak.md").symlink_to(outside)
    assert paths(discover(root)) == ["inside.md"]


def test_symlinked_folder_inside_the_tree_is_followed(tmp_path: Path) -> None:
    write(tmp_path, ".generated/api.md")
    (tmp_path / "api").symlink_to(tmp_path / ".generated", target_is_directory=True)
    assert paths(discover(tmp_path)) == ["api/api.md"]


def test_symlink_loop_is_walked_once(tmp_path: Path) -> None:
    write(tmp_path, "docs/page.md")
    (tmp_path / "docs" / "again").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "docs" / "self").symlink_to(tmp_path / "docs", target_is_directory=True)
    assert paths(discover(tmp_path)) == ["docs/page.md"]


def test_a_file_reachable_through_a_symlink_is_listed_once_by_its_real_path(tmp_path: Path) -> None:
    real = write(tmp_path, "v2/guide.md")
    (tmp_path / "a-latest.md").symlink_to(real)
    (tmp_path / "a-folder").symlink_to(tmp_path / "v2", target_is_directory=True)
    assert paths(discover(tmp_path)) == ["v2/guide.md"]


def test_self_referencing_symlink_is_reported_broken(tmp_path: Path) -> None:
    write(tmp_path, "page.md")
    (tmp_path / "loop.md").symlink_to(tmp_path / "loop.md")
    (tmp_path / "gone.md").symlink_to(tmp_path / "missing.md")
    result = discover(tmp_path)
    assert paths(result) == ["page.md"]
    assert result.skipped == (
        SkippedPath("gone.md", "broken symlink"),
        SkippedPath("loop.md", "broken symlink"),
    )


def test_single_file_is_found_under_its_own_name(tmp_path: Path) -> None:
    page = write(tmp_path, "guide/intro.md")
    result = discover(page)
    assert paths(result) == ["intro.md"]
    assert result.files[0].abspath.samefile(page)
    assert result.skipped == ()


def test_missing_path_is_an_ingest_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(IngestError, match=f"^path not found: {missing}$"):
        discover(missing)


def test_path_that_is_neither_file_nor_folder_is_an_ingest_error(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.md"
    os.mkfifo(fifo)
    with pytest.raises(IngestError, match="not a file or a folder"):
        discover(fifo)


def test_single_file_with_unsupported_suffix_names_the_supported_ones(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"unsupported file type: notes\.pdf \(supported: .*\.md.*\.rst"):
        discover(write(tmp_path, "notes.pdf"))


def test_unreadable_folder_is_skipped_and_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # chmod cannot stop root, and tests may run as root; refuse the folder at the scandir seam instead.
    write(tmp_path, "open/page.md")
    write(tmp_path, "locked/page.md")
    real_scandir = os.scandir

    def scandir(path: Path) -> object:
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(discover_module.os, "scandir", scandir)
    result = discover(tmp_path)
    assert paths(result) == ["open/page.md"]
    assert result.skipped == (SkippedPath("locked", "permission denied"),)


def test_read_text_decodes_utf8(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_bytes("Grüße — 日本\n".encode())
    assert read_text(page) == "Grüße — 日本\n"


def test_read_text_drops_a_utf8_bom(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_bytes(b"\xef\xbb\xbf# Title\n")
    assert read_text(page) == "# Title\n"


def test_read_text_normalises_line_endings(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_bytes(b"one\r\ntwo\rthree\n")
    assert read_text(page) == "one\ntwo\nthree\n"


def test_read_text_rejects_binary(tmp_path: Path) -> None:
    page = tmp_path / "image.md"
    page.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(UnreadableFileError) as caught:
        read_text(page)
    assert caught.value.reason == "binary file"


def test_read_text_rejects_invalid_utf8(tmp_path: Path) -> None:
    page = tmp_path / "latin1.txt"
    page.write_bytes("café".encode("latin-1"))
    with pytest.raises(UnreadableFileError) as caught:
        read_text(page)
    assert caught.value.reason == "not valid UTF-8 text"


def test_read_text_reports_os_errors_briefly(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError) as caught:
        read_text(tmp_path)
    assert caught.value.reason == "is a directory"


def test_read_text_reports_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = write(tmp_path, "page.md")

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(UnreadableFileError) as caught:
        read_text(page)
    assert caught.value.reason == "permission denied"
