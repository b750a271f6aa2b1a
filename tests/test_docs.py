"""The documentation under docs/ is self-contained and its examples run.

Every ```python block of a page is executed, in order, in one namespace per page, from the
repository root (examples that write files use temporary folders). A block whose first line
is `# needs: cnn` runs only where TensorFlow is installed. Links must stay inside the
repository and point to files that exist.
"""

import re
from pathlib import Path

import pytest

from conftest import HAS_TF

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))
#: pages whose ```python blocks are runnable examples (performance.md quotes kernel code)
EXAMPLE_PAGES = [ROOT / "docs" / f"{name}.md" for name in
                 ("model", "integrators", "stimuli", "metrics", "machines", "api", "plugins")]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\]\(([^)\s]+)\)")
#: pages linked before they are written (none now)
PENDING: set[str] = set()


def test_the_pages_are_there():
    names = {p.name for p in DOCS}
    assert {"index.md", "model.md", "integrators.md", "stimuli.md", "metrics.md",
            "machines.md", "api.md", "plugins.md"} <= names


@pytest.mark.parametrize("page", EXAMPLE_PAGES, ids=lambda p: p.name)
def test_examples_run(page, monkeypatch, capsys):
    blocks = BLOCK.findall(page.read_text())
    if not blocks:
        pytest.skip(f"{page.name} has no Python examples")
    monkeypatch.chdir(ROOT)
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    ran = 0
    for i, code in enumerate(blocks):
        if code.startswith("# needs: cnn") and not HAS_TF:
            continue
        try:
            exec(compile(code, f"{page.name}[block {i + 1}]", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"{page.name}, example {i + 1} failed: {exc!r}\n{code}") from exc
        ran += 1
    assert ran > 0


@pytest.mark.parametrize("page", [ROOT / "README.md"] + DOCS
                         + sorted((ROOT / "docs" / "lab").glob("*.md"))
                         + sorted((ROOT / "examples").rglob("README.md")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_links_stay_inside_the_repository(page):
    text = page.read_text()
    assert "shared/" not in text and "SPEC.md" not in text
    for target in LINK.findall(text):
        assert not re.match(r"^[a-z]+://", target), f"{page.name} links outside: {target}"
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"{page.name} links outside the repository: {target}"
        if path.name not in PENDING:
            assert path.exists(), f"{page.name}: broken link {target}"
