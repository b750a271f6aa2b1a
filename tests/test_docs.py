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
#: pages linked before they are written: docs/index.md links the GPU pages that are being
#: written; a link to one of these may point nowhere yet, and must once the page exists
PENDING: set[str] = {"gpu.md", "gpu-cnn.md"}


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


# -- the README and docs/ hold together -----------------------------------------------------

README = ROOT / "README.md"


def _relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(page.read_text()) if not re.match(r"^[a-z]+://", t)]


@pytest.mark.parametrize("page", [README] + DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    for target in _relative_links(page):
        assert not target.startswith(("../shared", "shared/")), f"{page.name}: {target}"
        path, _, anchor = target.partition("#")
        if not path:  # a link within the page
            continue
        resolved = (page.parent / path).resolve()
        if resolved.name in PENDING and not resolved.exists():
            continue
        assert resolved.exists(), f"{page.relative_to(ROOT)}: broken link {target}"


def test_every_docs_page_is_reachable_from_the_index():
    """Every page of docs/ (and the lab report) can be found by following links from
    docs/index.md."""
    index = ROOT / "docs" / "index.md"
    seen, todo = {index}, [index]
    while todo:
        page = todo.pop()
        for target in _relative_links(page):
            path = target.partition("#")[0]
            if not path.endswith(".md"):
                continue
            linked = (page.parent / path).resolve()
            if linked.exists() and linked.is_relative_to(ROOT / "docs") and linked not in seen:
                seen.add(linked)
                todo.append(linked)
    wanted = set(DOCS) | {ROOT / "docs" / "lab" / "report.md"}
    missing = sorted(str(p.relative_to(ROOT)) for p in wanted - seen)
    assert not missing, f"not reachable from docs/index.md: {missing}"


def test_no_page_links_outside_the_repository_or_to_shared():
    for page in [README] + DOCS:
        text = page.read_text()
        assert "../shared" not in text, page.name
        for target in _relative_links(page):
            path = (page.parent / target.partition("#")[0]).resolve()
            assert path.is_relative_to(ROOT), f"{page.name} links outside: {target}"


def test_the_readme_stays_short_and_keeps_its_sections():
    text = README.read_text()
    assert len(text.encode()) <= 15_000, "the README is for users: measurements go to docs/"
    for heading in ("## Two commands", "## A five-minute tour", "## Results on this machine",
                    "## CPU and GPU"):
        assert f"\n{heading}\n" in text, heading
    # the two commands CI runs (.ci/run) and that a newcomer pastes
    assert ("python3 -m venv .venv && .venv/bin/pip install -e '.[cnn]' && "
            ".venv/bin/hhbench run -o results.json") in text
    assert ("python3 -m venv .venv && .venv/bin/pip install -e '.[all]' && "
            ".venv/bin/python -m pytest") in text
    # one results table, dated
    assert text.count("| backend | batch | cold_ms") == 1
    assert re.search(r"measured 20\d\d-\d\d-\d\d", text)


FRESH = re.compile(r"about (\d+(?:\.\d)?) minutes in a fresh clone \(measured (20\d\d-\d\d-\d\d): "
                   r"(\d+) s first run, (\d+) s with numba's cache warm\)")


def test_the_default_run_time_quoted_is_the_fresh_clone_one():
    """A newcomer's first run fills numba's cache: the README quotes that time, the same
    figure and date as docs/performance.md's fresh-clone line."""
    readme = FRESH.search(" ".join(README.read_text().split()))
    assert readme, "the README quotes the default run's time in a fresh clone"
    perf = [line for line in (ROOT / "docs" / "performance.md").read_text().splitlines()
            if line.startswith("Fresh clone:")]
    assert len(perf) == 1
    doc = FRESH.search(perf[0])
    assert doc and doc.groups() == readme.groups()
    minutes, _, first_s, warm_s = readme.groups()
    assert int(first_s) > int(warm_s)                   # the first run is the slower one
    assert abs(int(first_s) / 60 - float(minutes)) <= 1  # "about N minutes" is the first run


TESTS_TIME = re.compile(r"the tests take about (\d+) minutes there \(measured "
                        r"(20\d\d-\d\d-\d\d): (\d+) s, CI's unit-test stage\)")


def test_the_readme_says_how_long_the_tests_take():
    """A newcomer runs the second command too: the README quotes the unit tests' time, the
    figure of the CI stage times of that date in docs/performance-results.md."""
    readme = TESTS_TIME.search(" ".join(README.read_text().split()))
    assert readme, "the README says how long the test command takes"
    minutes, date, seconds = readme.groups()
    stages = " ".join((ROOT / "docs" / "performance-results.md").read_text().split())
    run = re.search(rf"{date} \(.*?\): full install \d+ s, unit tests (\d+) s", stages)
    assert run and run.group(1) == seconds
    assert abs(int(seconds) / 60 - int(minutes)) <= 1
