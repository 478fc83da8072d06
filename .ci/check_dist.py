"""Check that the built sdist and wheel both carry the LICENSE file.

Usage: python .ci/check_dist.py DIST_DIR (run by `tox -e build` after `python -m build`).
Exits 1, naming what is missing, when a distribution lacks it.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path


def main(dist: Path) -> int:
    """Return 0 when every wheel and sdist in ``dist`` holds LICENSE, else 1."""
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    problems = [] if wheels and sdists else [f"no wheel or no sdist in {dist}"]
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
        # .dist-info/LICENSE, or .dist-info/licenses/LICENSE (setuptools 77 and later, PEP 639)
        licenses = [n for n in names if n.endswith("/LICENSE")]
        if not any(n.split("/")[0].endswith(".dist-info") for n in licenses):
            problems.append(f"{wheel.name}: no LICENSE in its .dist-info")
    for sdist in sdists:
        with tarfile.open(sdist) as archive:
            if not any(n.count("/") == 1 and n.endswith("/LICENSE") for n in archive.getnames()):
                problems.append(f"{sdist.name}: no LICENSE at its top level")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
