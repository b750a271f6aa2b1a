"""Where the CNN model comes from: --model, then HHBENCH_MODEL, then the shipped model
(package data when installed, the repository's models/ in a bare checkout)."""

from pathlib import Path

import pytest

from hhbench.errors import HHBenchError
from hhbench.model_location import locate_model
import hhbench.model_location as location

ROOT = Path(__file__).resolve().parents[1]


def test_an_explicit_path_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("HHBENCH_MODEL", str(tmp_path / "env-model"))
    found = locate_model(tmp_path / "given")
    assert (found.path, found.origin) == (tmp_path / "given", "--model")


def test_the_environment_comes_next(monkeypatch, tmp_path):
    monkeypatch.setenv("HHBENCH_MODEL", str(tmp_path / "env-model"))
    found = locate_model()
    assert (found.path, found.origin) == (tmp_path / "env-model", "HHBENCH_MODEL")
    assert "from HHBENCH_MODEL" in found.describe()


def test_without_either_the_shipped_model(monkeypatch):
    monkeypatch.delenv("HHBENCH_MODEL", raising=False)
    found = locate_model()
    assert found.origin in ("package data", "repository checkout")
    assert found.path.name == "hh-step-cnn" and (found.path / "Gmodel.h5").is_file()
    if found.origin == "repository checkout":
        assert found.path == ROOT / "models" / "hh-step-cnn"


def test_no_shipped_model_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("HHBENCH_MODEL", raising=False)
    monkeypatch.setattr(location, "packaged_model_path", lambda: None)
    monkeypatch.setattr(location, "checkout_model_path", lambda: tmp_path / "none")
    with pytest.raises(HHBenchError, match="no default CNN model.*--model PATH"):
        locate_model()
