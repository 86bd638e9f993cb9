"""No key is a constant: without DEBUG the project refuses to start unless its keys are set."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_setup(tmp_path, **env_overrides):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DJANGO_SECRET_KEY", "CARDSHOP_SECRET_KEYS", "CARDSHOP_HASH_KEY")
    }
    env.update({"CARDSHOP_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "cardshop.settings"}, **env_overrides)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; print(len(settings.SECRET_KEY))",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_keys(tmp_path):
    result = run_setup(tmp_path, DEBUG="0")
    assert result.returncode != 0
    assert "set DJANGO_SECRET_KEY, CARDSHOP_SECRET_KEYS, CARDSHOP_HASH_KEY" in result.stderr


def test_debug_generates_distinct_keys_per_checkout(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_setup(a, DEBUG="1").returncode == 0
    assert run_setup(b, DEBUG="1").returncode == 0
    key_a = (a / "dev-secrets.json").read_text()
    key_b = (b / "dev-secrets.json").read_text()
    assert key_a != key_b
    assert oct((a / "dev-secrets.json").stat().st_mode)[-3:] == "600"
