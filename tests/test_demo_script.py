"""`make run` (scripts/demo.sh) checks every port before it migrates or starts anything."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PORT_VARS = ("EPAY_PORT", "ALIPAY_PORT", "WECHATPAY_PORT", "STRIPE_PORT", "BANKGW_PORT", "TELEGRAM_PORT")


def _free_ports(n: int) -> list[int]:
    # Hold them all open while choosing, so the n ports differ; released before the script runs.
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def _processes_mentioning(port: int) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = (Path("/proc") / pid / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if ".simulators." in cmd and f"--port {port}" in cmd:
            found.append(cmd)
    return found


def _run(env_ports: dict[str, str], var_dir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", *PORT_VARS, "WEB")}
    env.update(env_ports, CARDSHOP_VAR_DIR=str(var_dir))
    return subprocess.run(
        ["bash", "scripts/demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=False
    )


def test_a_taken_simulator_port_is_named_and_nothing_starts(tmp_path):
    web, *sims = _free_ports(7)
    ports = dict(zip(PORT_VARS, map(str, sims), strict=True))
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(ports["EPAY_PORT"])))
        squatter.listen()
        started = time.monotonic()
        result = _run({"WEB": f"127.0.0.1:{web}", **ports}, tmp_path)
        elapsed = time.monotonic() - started

    assert result.returncode != 0
    assert elapsed < 10
    err = result.stderr
    assert f"Port {ports['EPAY_PORT']} (EPAY_PORT)" in err
    assert "already in use" in err
    assert "STRIPE_PORT=" in err and "make run" in err  # how to choose others
    # Only the taken port is reported.
    for var in PORT_VARS[1:]:
        assert f"({var})" not in err
    # Nothing was migrated (no SQLite database created) and no simulator was started.
    assert not (tmp_path / "db.sqlite3").exists()
    for p in sims:
        assert _processes_mentioning(p) == []


def test_a_taken_web_port_is_named(tmp_path):
    web, *sims = _free_ports(7)
    ports = dict(zip(PORT_VARS, map(str, sims), strict=True))
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", web))
        squatter.listen()
        result = _run({"WEB": f"127.0.0.1:{web}", **ports}, tmp_path)

    assert result.returncode != 0
    assert f"Port {web} (WEB)" in result.stderr
    assert not (tmp_path / "db.sqlite3").exists()
