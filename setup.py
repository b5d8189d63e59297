"""The package list: pyproject.toml holds everything else.

The demo's mappings stay at the repository's root (``mappings/``, where readers look for them) and
ship in the wheel as the data-only package ``hub._demo_mappings``, so that an installed
``msp-hub demo`` finds them (and ``examples/msp-hub.toml`` as ``hub._examples``, the config
``msp-hub init`` starts from); ``packages.find`` in pyproject.toml cannot map a folder outside
``hub/`` into a package, hence this file.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["hub", "hub.*", "plugins", "plugins.*"]) + ["hub._demo_mappings", "hub._examples"],
    package_dir={"hub._demo_mappings": "mappings", "hub._examples": "examples"},
)
