"""Sphinx configuration for the hatsu-sync documentation (``tox -e docs`` builds it)."""

from __future__ import annotations

import os
import sys

# Document the source tree next to this file, installed or not.
sys.path.insert(0, os.path.abspath(".."))

import hatsu_sync

project = "hatsu-sync"
author = "the hatsu-sync developers"
copyright = "2026, the hatsu-sync developers"
release = hatsu_sync.__version__
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_theme_options = {"description": "A synchronous client for the hatsu gateway"}
pygments_style = "sphinx"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# -n (nitpicky) makes every unresolved reference a warning, and -W every warning an error. The
# build runs offline (no intersphinx inventory to download), so names from the standard
# library and the dependencies cannot resolve: they are listed here, and nothing of
# hatsu_sync's own may be missing.
nitpicky = True
nitpick_ignore_regex = [
    ("py:class", r"(typing|collections\.abc|ssl|threading|types|socket|logging|enum)\..*"),
    ("py:class", r"(dataclasses_json|websocket|requests|pytest|_pytest)\..*"),
    ("py:(class|obj|exc|data)", r"(Any|Callable|Collection|Iterable|Iterator|Mapping|Sequence)"),
    ("py:(class|obj|exc|data)", r"(Optional|Union|TypeVar|Type|T|F|Handler|Key|KeyT)"),
    ("py:(class|obj|exc|data)", r"(int|str|bytes|float|bool|dict|list|tuple|set|object|None)"),
    ("py:(class|exc)", r"(ValueError|TypeError|RuntimeError|TimeoutError|ConnectionError)"),
    ("py:(class|exc)", r"(Exception|KeyboardInterrupt|ResourceWarning|OSError)"),
    ("py:(class|obj)", r"(Enum|IntEnum|SSLContext|Path|os\.PathLike|Event|Thread)"),
    ("py:func", r"(threading|warnings|os|gc)\..*"),
    ("py:class", r"hatsu_sync\._\w+\.[A-Z]"),  # private type variables (F = a handler's type)
]
# One name, several attributes (``Presence.type``, ``Channel.type``...): not an error.
suppress_warnings = ["ref.python"]


def _no_inline_type(app, what, name, obj, options, lines):  # type: ignore[no-untyped-def]
    """Undo napoleon's reading of a property's first sentence as ``type: description``.

    napoleon takes whatever precedes the first colon of a property's docstring for its type
    ("Where the client is: IDLE, ..." shows the type "Where the client is" and loses those
    words); hatsu_sync's types come from the annotations, so the sentence is put back whole.
    """
    if what != "property":
        return
    for index, line in enumerate(lines):
        if line.startswith(":type: "):
            words = line[len(":type: ") :]
            del lines[index]
            first = next((i for i, text in enumerate(lines) if text.strip()), None)
            if first is not None:
                lines[first] = f"{words}: {lines[first]}"
            return


def setup(app):  # type: ignore[no-untyped-def]
    """Run the hook above after napoleon's (priority 500)."""
    app.connect("autodoc-process-docstring", _no_inline_type, priority=600)
