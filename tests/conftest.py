from importlib.util import find_spec
from pathlib import Path

import pytest


DATA = Path(__file__).parent / "data"
LAB_SMALL = DATA / "lab_small"

#: tests of the CNN skip cleanly in a core install (`pip install hhbench`, no [cnn] extra)
HAS_TF = all(find_spec(m) is not None for m in ("tensorflow", "tf_keras", "h5py"))
needs_tf = pytest.mark.skipif(not HAS_TF, reason="needs TensorFlow: pip install 'hhbench[cnn]'")


@pytest.fixture(scope="session")
def lab_small():
    """A small model of the lab's family written by real Keras 2 (see data/make_lab_fixture.py).
    Tests that use it need TensorFlow and skip without it."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf_keras")
    return LAB_SMALL
