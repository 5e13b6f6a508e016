from __future__ import annotations

from textwrap import dedent

import pytest

from docserver.ingest.chunk import Chunk, chunk_document


def doc(text: str) -> str:
    return dedent(text).lstrip("\n")


def outline(chunks: list[Chunk]) -> list[tuple[str, int, int]]:
    return [(chunk.heading, chunk.start_line, chunk.end_line) for chunk in chunks]


def words(text: str) -> list[str]:
    return text.split()


# ---- Markdown ---------------------------------------------------------------------------------

GUIDE = doc(
    """
    Preamble line.

    # Guide

    Welcome.

    ## Install

    ### From source

    Clone it.
    Build it.

    ## Usage

    Run it.
    """
)


def test_markdown_sections_carry_their_heading_path_and_line_range() -> None:
    _, chunks = chunk_document(GUIDE, ".md")
    assert outline(chunks) == [
        ("", 1, 1),
        ("Guide", 3, 5),
        ("Guide > Install > From source", 9, 12),
        ("Guide > Usage", 14, 16),
    ]


def test_markdown_chunk_text_is_the_section_including_its_heading_line() -> None:
    _, chunks = chunk_document(GUIDE, ".md")
    assert chunks[2].text == "### From source\n\nClone it.\nBuild it."


def test_markdown_heading_directly_followed_by_a_subheading_makes_no_chunk() -> None:
    _, chunks = chunk_document(GUIDE, ".md")
    assert "Guide > Install" not in [chunk.heading for chunk in chunks]


def test_markdown_heading_with_no_body_before_a_sibling_is_kept() -> None:
    _, chunks = chunk_document("## Deprecated\n## Current\n\nUse this.\n", ".md")
    assert [(c.heading, c.text) for c in chunks] == [
        ("Deprecated", "## Deprecated"),
        ("Current", "## Current\n\nUse this."),
    ]


def test_markdown_title_is_the_first_h1() -> None:
    title, _ = chunk_document("## Overview\n\ntext\n\n# Real Title\n", ".md")
    assert title == "Real Title"


def test_markdown_title_falls_back_to_the_first_heading() -> None:
    title, _ = chunk_document("text\n\n## Overview\n\n### Detail\n", ".md")
    assert title == "Overview"


def test_document_without_headings_has_an_empty_title() -> None:
    title, chunks = chunk_document("just text\n", ".md")
    assert title == ""
    assert outline(chunks) == [("", 1, 1)]


def test_hash_lines_inside_fenced_code_are_not_headings() -> None:
    text = doc(
        """
        # Setup

        ```bash
        # install the package
        pip install docserver
        ```

        ~~~~
        ## also code
        ~~~~
        """
    )
    _, chunks = chunk_document(text, ".md")
    assert outline(chunks) == [("Setup", 1, 10)]


def test_a_fence_closes_only_with_its_own_marker() -> None:
    text = "```\n~~~\n# still code\n```\n# Heading\n"
    _, chunks = chunk_document(text, ".md")
    assert outline(chunks) == [("", 1, 4), ("Heading", 5, 5)]


def test_inline_triple_backticks_do_not_open_a_fence() -> None:
    _, chunks = chunk_document("Use ```code``` here.\n```js```\n\n# After\n", ".md")
    assert [chunk.heading for chunk in chunks] == ["", "After"]


def test_atx_heading_needs_a_space_and_drops_closing_hashes() -> None:
    text = "#hashtag\n\n## Install ##\n\nC# is fine.\n"
    _, chunks = chunk_document(text, ".md")
    assert outline(chunks) == [("", 1, 1), ("Install", 3, 5)]


def test_heading_titles_lose_link_urls_code_ticks_and_anchors() -> None:
    title, _ = chunk_document("# Use [`docserver`](https://example.com) well {#use}\n\ntext\n", ".md")
    assert title == "Use docserver well"


def test_setext_headings() -> None:
    text = doc(
        """
        Guide
        =====

        Intro.

        Install
        -------

        Steps.
        """
    )
    title, chunks = chunk_document(text, ".md")
    assert title == "Guide"
    assert outline(chunks) == [("Guide", 1, 4), ("Guide > Install", 6, 9)]


def test_dashes_after_a_blank_line_are_a_rule_not_a_heading() -> None:
    text = "Intro.\n\n---\n\nMore.\n"
    _, chunks = chunk_document(text, ".md")
    assert outline(chunks) == [("", 1, 5)]


def test_dashes_after_a_list_item_are_not_a_setext_underline() -> None:
    _, chunks = chunk_document("- item\n---\n", ".md")
    assert [chunk.heading for chunk in chunks] == [""]


def test_front_matter_gives_the_title_and_is_left_out_of_chunks() -> None:
    text = doc(
        """
        ---
        layout: page
        title: "Configuration"
        ---

        # Settings

        Set things.
        """
    )
    title, chunks = chunk_document(text, ".md")
    assert title == "Configuration"
    assert outline(chunks) == [("Settings", 6, 8)]
    assert "layout" not in chunks[0].text


def test_front_matter_without_title_still_is_left_out() -> None:
    title, chunks = chunk_document("---\ntags: [a]\n---\nBody.\n", ".md")
    assert title == ""
    assert [(c.text, c.start_line) for c in chunks] == [("Body.", 4)]


def test_mdx_is_chunked_as_markdown() -> None:
    _, chunks = chunk_document("# Page\n\n<Note>hi</Note>\n", ".MDX")
    assert outline(chunks) == [("Page", 1, 3)]


def test_crlf_text_keeps_line_numbers() -> None:
    _, chunks = chunk_document("# A\r\n\r\none\r\n# B\r\ntwo\r\n", ".md")
    assert [(c.text, c.start_line, c.end_line) for c in chunks] == [("# A\n\none", 1, 3), ("# B\ntwo", 4, 5)]


# ---- reStructuredText -------------------------------------------------------------------------

RST = doc(
    """
    ==========
    User Guide
    ==========

    Intro text.

    Install
    =======

    Steps.

    From source
    -----------

    Clone.

    Usage
    =====

    Run.
    """
)


def test_rst_levels_follow_the_order_styles_first_appear() -> None:
    title, chunks = chunk_document(RST, ".rst")
    assert title == "User Guide"
    assert outline(chunks) == [
        ("User Guide", 1, 5),
        ("User Guide > Install", 7, 10),
        ("User Guide > Install > From source", 12, 15),
        ("User Guide > Usage", 17, 20),
    ]


def test_rst_overline_and_underline_style_differs_from_underline_only() -> None:
    # "===" over+under and "===" under-only are two styles, hence two levels.
    _, chunks = chunk_document(RST, ".rst")
    assert chunks[1].text == "Install\n=======\n\nSteps."


def test_rst_underline_shorter_than_the_title_is_not_a_title() -> None:
    _, chunks = chunk_document("Long title here\n===\n\nBody.\n", ".rst")
    assert outline(chunks) == [("", 1, 4)]


def test_rst_title_must_start_after_a_blank_line() -> None:
    _, chunks = chunk_document("A paragraph line\nstill paragraph\n----------------\n", ".rst")
    assert [chunk.heading for chunk in chunks] == [""]


def test_rst_indented_adornments_in_literal_blocks_are_not_titles() -> None:
    text = "Title\n=====\n\n::\n\n    Not a title\n    ===========\n"
    _, chunks = chunk_document(text, ".rst")
    assert outline(chunks) == [("Title", 1, 7)]


# ---- HTML -------------------------------------------------------------------------------------

PAGE = doc(
    """
    <html>
    <head>
      <title>Docserver  Manual</title>
      <style>h1 { color: red }</style>
    </head>
    <body>
    <nav><a href="/">Home</a> <h2>Menu</h2></nav>
    <h1>Manual</h1>
    <p>Read <b>this</b>
    first &amp; always.</p>
    <script>document.write("<h2>Injected</h2>")</script>
    <h2>Install</h2>
    <ul><li>One</li><li>Two</li></ul>
    </body>
    </html>
    """
)


def test_html_title_comes_from_the_title_element() -> None:
    title, _ = chunk_document(PAGE, ".html")
    assert title == "Docserver Manual"


def test_html_headings_make_sections_with_source_line_ranges() -> None:
    _, chunks = chunk_document(PAGE, ".html")
    assert outline(chunks) == [("Manual", 8, 10), ("Manual > Install", 12, 13)]


def test_html_text_is_extracted_with_block_breaks() -> None:
    _, chunks = chunk_document(PAGE, ".html")
    assert chunks[0].text == "Manual\n\nRead this first & always."
    assert chunks[1].text == "Install\n\nOne\nTwo"


def test_html_script_style_and_nav_are_skipped() -> None:
    _, chunks = chunk_document(PAGE, ".htm")
    text = "\n".join(chunk.text for chunk in chunks)
    for hidden in ["Injected", "document.write", "color", "Home", "Menu"]:
        assert hidden not in text


def test_html_title_falls_back_to_the_first_h1() -> None:
    title, _ = chunk_document("<h2>Intro</h2><p>x</p><h1>Main</h1>", ".html")
    assert title == "Main"


def test_html_pre_keeps_its_lines() -> None:
    html = "<h1>Code</h1>\n<pre>def f():\n    return 1\n</pre>\n"
    _, chunks = chunk_document(html, ".html")
    assert [(c.text, c.start_line, c.end_line) for c in chunks] == [("Code\n\ndef f():\n    return 1", 1, 3)]


def test_html_svg_title_is_not_the_page_title() -> None:
    title, _ = chunk_document("<body><svg><title>icon</title></svg><h1>Page</h1></body>", ".html")
    assert title == "Page"


# ---- Plain text -------------------------------------------------------------------------------


def test_text_has_no_headings_and_keeps_paragraphs_together() -> None:
    text = "# not a heading\n\nSecond paragraph\nwraps here.\n"
    title, chunks = chunk_document(text, ".txt")
    assert title == ""
    assert [(c.heading, c.text, c.start_line, c.end_line) for c in chunks] == [
        ("", "# not a heading\n\nSecond paragraph\nwraps here.", 1, 4)
    ]


def test_text_splits_only_between_paragraphs_when_over_the_cap() -> None:
    text = "alpha beta\ngamma\n\ndelta epsilon\n"
    _, chunks = chunk_document(text, ".txt", max_chars=20)
    assert [(c.text, c.start_line, c.end_line) for c in chunks] == [
        ("alpha beta\ngamma", 1, 2),
        ("delta epsilon", 4, 4),
    ]


def test_unknown_suffix_is_treated_as_text() -> None:
    _, chunks = chunk_document("# x\n", ".adoc")
    assert outline(chunks) == [("", 1, 1)]


# ---- Size cap ---------------------------------------------------------------------------------


def long_section() -> str:
    paragraphs = [" ".join(f"p{p}w{w}" for w in range(30)) for p in range(12)]
    return "# Big\n\n" + "\n\n".join(paragraphs) + "\n"


def test_long_section_is_split_at_paragraphs_under_one_heading() -> None:
    text = long_section()
    _, chunks = chunk_document(text, ".md", max_chars=400)
    assert len(chunks) > 1
    assert all(len(chunk.text) <= 400 for chunk in chunks)
    assert {chunk.heading for chunk in chunks} == {"Big"}
    assert all(chunk.text.split("\n")[-1].endswith("w29") for chunk in chunks)


def test_split_chunks_cover_the_content_in_order() -> None:
    text = long_section()
    _, chunks = chunk_document(text, ".md", max_chars=400)
    assert words(" ".join(chunk.text for chunk in chunks)) == words(text)


def test_split_chunk_line_ranges_match_their_text() -> None:
    text = long_section()
    lines = text.split("\n")
    _, chunks = chunk_document(text, ".md", max_chars=400)
    for chunk in chunks:
        assert "\n".join(lines[chunk.start_line - 1 : chunk.end_line]) == chunk.text


def test_long_paragraph_is_split_at_lines() -> None:
    text = "\n".join(f"line {n:02d} " + "x" * 20 for n in range(10)) + "\n"
    _, chunks = chunk_document(text, ".txt", max_chars=100)
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 3), (4, 6), (7, 9), (10, 10)]
    assert all(len(chunk.text) <= 100 for chunk in chunks)


@pytest.mark.parametrize(("max_chars", "ranges"), [(32, [(1, 3)]), (31, [(1, 2), (3, 3)])])
def test_the_cap_counts_the_newlines_between_lines(max_chars: int, ranges: list[tuple[int, int]]) -> None:
    text = "\n".join(["x" * 10] * 3)  # 32 characters
    _, chunks = chunk_document(text, ".txt", max_chars=max_chars)
    assert [(c.start_line, c.end_line) for c in chunks] == ranges
    assert all(len(chunk.text) <= max_chars for chunk in chunks)


def test_long_line_is_cut_at_the_cap_keeping_its_line_number() -> None:
    text = "intro\n\n" + "y" * 250 + "\n"
    _, chunks = chunk_document(text, ".txt", max_chars=100)
    assert [(len(c.text), c.start_line, c.end_line) for c in chunks] == [
        (5, 1, 1),
        (100, 3, 3),
        (100, 3, 3),
        (50, 3, 3),
    ]


def test_long_line_is_cut_between_words_when_it_can_be() -> None:
    line = " ".join(f"word{n:03d}" for n in range(60))
    _, chunks = chunk_document(line, ".txt", max_chars=100)
    assert all(len(chunk.text) <= 100 for chunk in chunks)
    assert "".join(chunk.text for chunk in chunks) == line
    assert [word for chunk in chunks for word in chunk.text.split()] == line.split()


def test_no_chunk_is_empty_or_whitespace() -> None:
    text = "\n\n   \n# A\n\n\t\n## B\n\n" + " " * 300 + "\n\nbody\n\na" + " " * 250 + "b\n   \n"
    _, chunks = chunk_document(text, ".md", max_chars=50)
    assert chunks
    assert all(chunk.text.strip() for chunk in chunks)


def test_blank_document_has_no_chunks() -> None:
    assert chunk_document(" \n\n\t\n", ".md") == ("", [])


def test_max_chars_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        chunk_document("x", ".md", max_chars=0)
