"""The Python code blocks of README.md and docs/*.md run, so the docs stay true.

A block whose info string contains ``no-run`` is an outline with placeholders and is skipped.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.S | re.M)


def _blocks(page):
    return [code for info, code in BLOCK.findall(page.read_text()) if "no-run" not in info]


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
