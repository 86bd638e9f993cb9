"""Every risk test starts with a fresh scoring state and its own models directory (VAR_DIR under tmp_path)."""

from __future__ import annotations

import pytest

from risk import scoring


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    scoring.model_unload()
    yield tmp_path
    scoring.model_unload()
