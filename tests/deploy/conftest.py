"""The promtool binary for the rule tests (as the e2e fixtures: CI fails where others skip)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from harness.prometheus import find_binary


@pytest.fixture(scope="session")
def promtool() -> Path:
    found = find_binary("promtool")
    if found is not None:
        return found
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(
            "promtool not installed: in CI nothing may skip; scripts/test runs "
            "scripts/install-prometheus before pytest, so that step must have failed",
            pytrace=False,
        )
    pytest.skip("promtool not installed: run scripts/install-prometheus")
