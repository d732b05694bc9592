"""What is running: the distribution, its version and the commit it was built from."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import pathlib
import subprocess

DISTRIBUTION = "pyramid-postgrest-mysql"


@functools.cache
def package_version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # run from a checkout never installed
        return "0+unknown"


@functools.cache
def commit() -> str:
    """``API_COMMIT`` (set it where the code is built), else the checkout's
    HEAD when the package runs from one, else ``unknown``."""
    given = os.environ.get("API_COMMIT", "").strip()
    if given:
        return given
    checkout = pathlib.Path(__file__).resolve().parent.parent
    if (checkout / ".git").exists():
        try:
            done = subprocess.run(
                ["git", "-C", str(checkout), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            )
            return done.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return "unknown"
