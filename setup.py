"""The package list, which pyproject.toml cannot express: hhbench's own subpackages plus
`hhbench.models`, mapped onto the repository's top-level `models/` folder so that wheels
and installs carry the shipped CNN as package data (see pyproject.toml's package-data)."""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["hhbench", "hhbench.*"]) + ["hhbench.models"],
      package_dir={"hhbench.models": "models"})
