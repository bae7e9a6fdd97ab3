"""driftline core: a model's whole life (ingest, train, gate, serve, monitor) with no Airflow.

This package runs in Airflow workers, in training pods and in model servers alike.
"""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

__version__ = "0.1.0"


@cache
def code_version() -> str:
    """This code's version: ``$DRIFTLINE_CODE_VERSION`` (set in images), else the package
    version plus the git commit of the checkout it runs from, when there is one."""
    if os.environ.get("DRIFTLINE_CODE_VERSION"):
        return os.environ["DRIFTLINE_CODE_VERSION"]
    try:
        rev = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "--short=12",
                              "HEAD"], capture_output=True, text=True, timeout=5, check=True)
        return f"{__version__}+g{rev.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        return __version__
