"""Packaging for hatsu-sync, the synchronous client for the hatsu gateway."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
REPOSITORY = "https://github.com/hatsu-sync/hatsu-sync"


def version() -> str:
    """The version, read from hatsu_sync/__init__.py (its one place) without importing it."""
    text = (HERE / "hatsu_sync" / "__init__.py").read_text(encoding="utf-8")
    found = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    if found is None:
        raise RuntimeError("hatsu_sync/__init__.py has no __version__ line")
    return found.group(1)


setup(
    name="hatsu-sync",
    version=version(),
    description="A synchronous Python client for the hatsu gateway event stream.",
    long_description=(HERE / "README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    license="MIT",
    # setuptools >= 61 puts these in the wheel's .dist-info and in the sdist (MANIFEST.in too).
    license_files=["LICENSE"],
    url=REPOSITORY,
    project_urls={
        "Documentation": "https://hatsu-sync.github.io/hatsu-sync/",
        "Source": REPOSITORY,
        "Changelog": "https://hatsu-sync.github.io/hatsu-sync/changelog.html",
        "Issues": f"{REPOSITORY}/issues",
    },
    packages=find_packages(include=["hatsu_sync", "hatsu_sync.*"]),
    package_data={"hatsu_sync": ["py.typed"]},
    python_requires=">=3.9",
    install_requires=[
        "websocket-client>=1.6,<2",
        "dataclasses-json>=0.5.7",
        # Only hatsu_sync.testing.LocalGateway uses it (the sync server API of 13+).
        "websockets>=13",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            # tests/test_gateway.py talks to LocalGateway's discovery endpoint with it (the
            # library's own discovery is a bounded GET of its own: see _fetch.py).
            "requests>=2.25",
            "hypothesis>=6",
            "trustme>=1.0",
            "nbclient>=0.7",
            "nbformat>=5.7",
            "ipykernel>=6.20",
            # tests/test_readme.py renders README.rst, as PyPI does with the description.
            "docutils>=0.18",
        ],
    },
    entry_points={
        "console_scripts": ["hatsu-sync = hatsu_sync.cli:main"],
        # Gives every pytest run the `hatsu_gateway` fixture (hatsu_sync/pytest_plugin.py).
        "pytest11": ["hatsu_sync = hatsu_sync.pytest_plugin"],
    },
    classifiers=[
        "Development Status :: 4 - Beta",
        "Intended Audience :: Developers",
        "Operating System :: OS Independent",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.9",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Typing :: Typed",
    ],
)
