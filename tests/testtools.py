"""Helpers shared by test packages (importable by name: tests/ is on sys.path)."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(name: str) -> None:
    """A missing tool fails under CI=true (never a silent skip there) and skips on a developer machine."""
    if shutil.which(name):
        return
    unavailable(f"{name} is not installed (scripts/install-deps.sh installs it)")


def unavailable(msg: str) -> NoReturn:
    """What a test does when something it needs is missing: fail under CI=true, skip on a developer machine."""
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)
