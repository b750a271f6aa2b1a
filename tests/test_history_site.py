"""The published dashboard in a real headless Chromium (Debian's package): every page
renders, the plots hold one dot per point, nothing asks for the network, the console stays
empty. Skipped where Chromium is absent, except in CI (CI=true), where that fails."""

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sqlalchemy", reason="needs the history extra: pip install 'hhbench[history]'")

from history_support import case, day, new_database, postgres_server, run, sha  # noqa: E402,F401
from hhbench.cli import main  # noqa: E402
from hhbench.history.store import Store  # noqa: E402

N_COMMITS, MACHINES = 14, ("CPU A", "CPU B")


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        why = "Chromium not found: apt-get install chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return found


def browse(page: Path, profile: Path, *, screenshot: Path | None = None) -> tuple[str, list]:
    """(the DOM after scripts ran, the console messages) of `page` in headless Chromium."""
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           # no network: any request for a remote resource would fail, and be logged
           "--proxy-server=127.0.0.1:9", "--window-size=1300,900"]
    cmd += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    out = subprocess.run(cmd + [page.as_uri()], capture_output=True, text=True, timeout=120)
    console = [ln for ln in out.stderr.splitlines() if ":CONSOLE" in ln]
    return out.stdout, console


class _Dots(HTMLParser):
    """Counts per SVG plot: dots (class pt), change / mark lines, and the vertices of each
    machine's line."""

    def __init__(self):
        super().__init__()
        self.plots = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg":
            self.plots.append({"pt": 0, "regression": 0, "improvement": 0, "mark": 0,
                               "vertices": []})
        elif self.plots and a.get("class") in ("pt", "regression", "improvement", "mark"):
            self.plots[-1][a["class"]] += 1
        elif self.plots and tag == "polyline":
            self.plots[-1]["vertices"].append(len(a["points"].split()))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request, tmp_path_factory):
    """The dashboard of a store in SQLite, and of one in a real PostgreSQL."""
    tmp = tmp_path_factory.mktemp("site")
    db = str(tmp / "h.db") if request.param == "sqlite" else \
        new_database(request.getfixturevalue("postgres_server"))
    rng = np.random.default_rng(3)
    with Store.open(db) as st:
        for i in range(N_COMMITS):
            for m in MACHINES:
                f = 2.0 if i >= 8 else 1.0
                numba = 1e-3 * f * (1 + 0.01 * rng.normal()) * np.exp(rng.normal(0, .003, 3))
                st.record(run(sha(i), [case("numba", list(numba),
                                            rmse=1.5 if i >= 5 else 1.0)],
                              cpu=m, time_utc=day(i)), repos=[])
        st.mark(sha(3), "a planned refactoring")
    assert main(["history", "publish", "--store", db, "-o", str(tmp / "site")]) == 0
    return tmp / "site"


def test_every_page_renders_without_console_errors_or_network(site, tmp_path):
    pages = sorted(site.glob("*.html"))
    assert {p.name for p in pages} == {"index.html", "regressions.html", "machines.html",
                                       "case-1.html"}
    for page in pages:
        text = page.read_text()
        # nothing remote: the only URL is SVG's namespace
        assert set(re.findall(r"https?://[^\"' )]+", text)) <= {"http://www.w3.org/2000/svg"}
        dom, console = browse(page, tmp_path / f"profile-{page.stem}")
        assert console == [], console
        assert "<h1>" in dom and "</body>" in dom


def test_the_case_page_plots_every_point_change_and_mark(site, tmp_path):
    dom, console = browse(site / "case-1.html", tmp_path / "profile")
    assert console == []
    parser = _Dots()
    parser.feed(dom)
    speed, rmse, gamma, count = parser.plots
    points = N_COMMITS * len(MACHINES)
    # every plot's lines hold every commit of each machine; the time has a dot per point,
    # the exact accuracy one at each end and one where it changes (RMSE at commit 5)
    assert [p["vertices"] for p in parser.plots] == [[N_COMMITS] * len(MACHINES)] * 4
    assert [p["pt"] for p in parser.plots] == [points, 3 * len(MACHINES), 2 * len(MACHINES),
                                               2 * len(MACHINES)]
    # the 2x slowdown at commit 8 on both machines; the mark on every plot
    assert speed["regression"] == 2 and speed["mark"] == 1
    assert rmse["regression"] == 2 and gamma["regression"] == 0
    assert f"{sha(7)[:10]}..{sha(8)[:10]}" in dom and "a planned refactoring" in dom
    # the regressions page names both changes, machines page both machines
    reg, _ = browse(site / "regressions.html", tmp_path / "profile2")
    assert reg.count("class=\"bad\"") == 2
    machines, _ = browse(site / "machines.html", tmp_path / "profile3")
    assert "CPU A" in machines and "CPU B" in machines


def test_the_console_check_sees_an_error(tmp_path):
    # the check above is only worth something if a page's error reaches it
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><h1>x</h1><script>noSuchFunction();</script></body></html>")
    _, console = browse(bad, tmp_path / "profile")
    assert any("noSuchFunction" in line for line in console)


def test_a_screenshot_shows_the_plots(site, tmp_path):
    import matplotlib.image as mpimg
    shot = tmp_path / "case.png"
    browse(site / "case-1.html", tmp_path / "profile", screenshot=shot)
    img = mpimg.imread(shot)
    coloured = np.any(np.abs(img[..., :3] - img[..., :3].mean(axis=2, keepdims=True)) > 0.1,
                      axis=2)
    assert coloured.mean() > 0.002  # the machines' coloured lines and dots are drawn
