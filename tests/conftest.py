from pathlib import Path

import pytest


DATA = Path(__file__).parent / "data"
LAB_SMALL = DATA / "lab_small"


@pytest.fixture(scope="session")
def lab_small():
    """A small model of the lab's family written by real Keras 2 (see data/make_lab_fixture.py)."""
    return LAB_SMALL
