"""The promtool binary for the rule tests (as the e2e fixtures: CI fails where others skip)."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.prometheus import find_binary, not_installed


@pytest.fixture(scope="session")
def promtool() -> Path:
    return find_binary("promtool") or not_installed("promtool")
