"""The Python code blocks of README.md and docs/*.md run, so the docs stay true, and the built site
shows every page as a reader sees it: code as code, tables as tables, no stray markdown.

A block after a ``<!-- no-run -->`` line is an outline with placeholders and is skipped. (An info
string such as ```` ```python no-run ```` is not a fence to MkDocs: it flattens the block into a
paragraph and its closing fence swallows the prose after it.)
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.S | re.M)
NO_RUN = "<!-- no-run -->"


def _skipped(text, match) -> bool:
    """Whether the block ``match`` follows a ``<!-- no-run -->`` line (blank lines between)."""
    before = text[:match.start()].rstrip().rsplit("\n", 1)[-1]
    return before.strip() == NO_RUN


def _blocks(page):
    """The runnable blocks, each padded with blank lines so that its line numbers are the page's:
    AutoGraph reads a traced function's source from the file at those lines."""
    text = page.read_text()
    return ["\n" * text.count("\n", 0, match.start(2)) + match.group(2)
            for match in BLOCK.finditer(text) if not _skipped(text, match)]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_code_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default checkpoints and logs land here, not in the repository
    namespace = {"__name__": f"docs_{page.stem}"}
    for code in _blocks(page):
        exec(compile(code, str(page), "exec"), namespace)  # noqa: S102 - our own docs


def test_every_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert f"docs/{page.name}" in readme, f"{page.name} is not linked from README.md"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The docs site, built once with ``--strict``. Not quiet: ``-q`` hides the warnings that
    ``--strict`` turns into a failure (a docstring's Args naming no parameter)."""
    folder = tmp_path_factory.mktemp("docs") / "site"
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(folder)],
                           cwd=ROOT, capture_output=True, text=True,
                           env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
    assert built.returncode == 0, built.stderr[-3000:]
    return folder


def _markdown_tables(text) -> int:
    """The tables of a markdown page outside its code blocks (a header row and its ``|---|`` line)."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return len(re.findall(r"^\|.*\|\s*\n\|[ :|-]*-[ :|-]*\|\s*$", prose, flags=re.M))


def _text_outside_code(html) -> str:
    return re.sub(r"<(pre|code)[^>]*>.*?</\1>", "", html, flags=re.S)


DOC_PAGES = sorted((ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("page", DOC_PAGES, ids=[p.name for p in DOC_PAGES])
def test_each_page_renders_code_and_tables_as_a_reader_sees_them(site, page):
    html = (site / ("" if page.stem == "index" else page.stem) / "index.html").read_text()
    text = _text_outside_code(html)
    assert "```" not in text, "a fence was not recognised: it shows as text and swallows what follows"
    assert html.count("<table>") >= _markdown_tables(page.read_text()), "a table shows as raw text"
    assert not re.search(r"<strong>(init|main|name)</strong>", text), "dunder names became bold"


def test_the_table_count_sees_a_swallowed_table():
    page = "Text\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\n| x |\n|---|\n```\n"
    assert _markdown_tables(page) == 1


def test_the_built_site_renders_references_and_examples(site):
    """Docstrings use one cross-reference style mkdocstrings renders (no raw Sphinx roles), and
    their examples come out as code, not as a flattened line of text."""
    api = (site / "api" / "index.html").read_text()
    assert not re.findall(r":(?:class|meth|func|mod|attr):`?", api)
    assert re.search(r"<pre[^>]*>.*?&gt;&gt;&gt;", api, re.S)  # examples are code blocks
    assert not re.findall(r"<p>[^<]*&gt;&gt;&gt;", api)  # and never a paragraph of text


def test_blocks_keep_their_line_numbers(tmp_path):
    """AutoGraph reads a traced function's source from the page at the block's lines: with
    block-relative numbers it would find a skipped block's function there instead."""
    page = tmp_path / "page.md"
    page.write_text("# A page\n<!-- no-run -->\n\n```python\ndef scale(x):\n    return x * 100.0\n```\n\n"
                    "```python\nimport tensorflow as tf\n\ndef scale(x):\n    return x + 1.0\n\n"
                    "@tf.function\ndef step(x):\n    return scale(x)\n\nresult = float(step(tf.constant(1.0)))\n"
                    "```\n")
    namespace = {}
    for code in _blocks(page):
        exec(compile(code, str(page), "exec"), namespace)  # noqa: S102
    assert namespace["result"] == 2.0
