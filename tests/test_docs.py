"""The Python code blocks of README.md and docs/*.md run, so the docs stay true.

A block whose info string contains ``no-run`` is an outline with placeholders and is skipped.
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


def _blocks(page):
    """The runnable blocks, each padded with blank lines so that its line numbers are the page's:
    AutoGraph reads a traced function's source from the file at those lines."""
    text = page.read_text()
    return ["\n" * text.count("\n", 0, match.start(2)) + match.group(2)
            for match in BLOCK.finditer(text) if "no-run" not in match.group(1)]


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


def test_the_built_site_renders_references_and_examples(tmp_path):
    """Docstrings use one cross-reference style mkdocstrings renders (no raw Sphinx roles), and
    their examples come out as code, not as a flattened line of text. Not quiet: ``-q`` hides the
    warnings that ``--strict`` turns into a failure (a docstring's Args naming no parameter)."""
    site = tmp_path / "site"
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
                           cwd=ROOT, capture_output=True, text=True,
                           env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
    assert built.returncode == 0, built.stderr[-3000:]
    api = (site / "api" / "index.html").read_text()
    assert not re.findall(r":(?:class|meth|func|mod|attr):`?", api)
    assert re.search(r"<pre[^>]*>.*?&gt;&gt;&gt;", api, re.S)  # examples are code blocks
    assert not re.findall(r"<p>[^<]*&gt;&gt;&gt;", api)  # and never a paragraph of text


def test_blocks_keep_their_line_numbers(tmp_path):
    """AutoGraph reads a traced function's source from the page at the block's lines: with
    block-relative numbers it would find a skipped block's function there instead."""
    page = tmp_path / "page.md"
    page.write_text("# A page\n```python no-run\ndef scale(x):\n    return x * 100.0\n```\n\n"
                    "```python\nimport tensorflow as tf\n\ndef scale(x):\n    return x + 1.0\n\n"
                    "@tf.function\ndef step(x):\n    return scale(x)\n\nresult = float(step(tf.constant(1.0)))\n"
                    "```\n")
    namespace = {}
    for code in _blocks(page):
        exec(compile(code, str(page), "exec"), namespace)  # noqa: S102
    assert namespace["result"] == 2.0
