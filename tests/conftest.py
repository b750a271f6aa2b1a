import shutil
import tempfile
from importlib.util import find_spec
from pathlib import Path

import pytest


DATA = Path(__file__).parent / "data"
LAB_SMALL = DATA / "lab_small"

#: tests of the CNN skip cleanly in a core install (`pip install hhbench`, no [cnn] extra)
HAS_TF = all(find_spec(m) is not None for m in ("tensorflow", "tf_keras", "h5py"))
needs_tf = pytest.mark.skipif(not HAS_TF, reason="needs TensorFlow: pip install 'hhbench[cnn]'")

#: what hhbench and its examples put in the temp folder: hhbench's own prefixes
#: ("hhbench-worker-", "hhbench-outputs-"), Python's default ones ("tmp…": mkdtemp() or
#: mkstemp() without a prefix) and hhbench.atomic's staging files ("….tmp")
LEAK_PREFIXES = ("hhbench", "tmp")
LEAK_SUFFIXES = (".tmp",)


def leftovers(folder: Path) -> list[str]:
    """Entries of `folder` named as hhbench (or a prefix-less mkdtemp) names them."""
    return sorted(p.name for p in folder.iterdir()
                  if p.name.startswith(LEAK_PREFIXES) or p.name.endswith(LEAK_SUFFIXES))


@pytest.fixture(scope="session", autouse=True)
def nothing_left_in_the_temp_folder(tmp_path_factory):
    """The session runs with its own temp folder (tempfile's and $TMPDIR, so subprocesses
    use it too), removed at the end; the session fails if a test left anything there that
    hhbench names (see LEAK_PREFIXES) — a file in /tmp that nobody removes. Other programs'
    leftovers (TensorFlow's, say) are removed without comment; pytest's own folders
    (tmp_path) stay where pytest keeps them."""
    tmp_path_factory.getbasetemp()  # before the switch: pytest's folders are its business
    private = Path(tempfile.mkdtemp(prefix="hhbench-tests-"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", str(private))
        mp.setenv("TMPDIR", str(private))
        yield private
    left = leftovers(private)
    shutil.rmtree(private, ignore_errors=True)
    if left:
        pytest.fail(f"the tests left {', '.join(left)} in the temp folder (nothing "
                    f"removed them); use tmp_path or a TemporaryDirectory", pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def reference_cache_of_the_session(tmp_path_factory):
    """The session's own reference cache (hhbench.reference_cache): tests, and the commands
    they run, never read or fill the user's cache folder."""
    folder = tmp_path_factory.mktemp("reference-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HHBENCH_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="session")
def lab_small():
    """A small model of the lab's family written by real Keras 2 (see data/make_lab_fixture.py).
    Tests that use it need TensorFlow and skip without it."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf_keras")
    return LAB_SMALL
