"""``msp-hub demo --keep``: the simulators stay up until Ctrl-C and every command works against them."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def _source(secrets: Path) -> dict[str, str]:
    """What `set -a; . secrets.env; set +a` exports, read by a real shell."""
    out = subprocess.run(["sh", "-c", f"set -a; . {shlex.quote(str(secrets))}; set +a; env -0"],
                         env={"PATH": os.environ.get("PATH", "")}, capture_output=True, text=True, check=True)
    return dict(item.split("=", 1) for item in out.stdout.split("\0") if "=" in item)


def test_demo_keep_serves_until_interrupted(tmp_path):
    workdir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSP_HUB")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "demo", "--keep", "--devices", "40",
                             "--workdir", str(workdir)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Press Ctrl-C"):
                break
        else:
            raise AssertionError("demo --keep ended before it printed its lines:\n" + "\n".join(lines))
        printed = {k: v.strip() for k, _, v in (l.partition(":") for l in lines if l.startswith(("config:", "secrets:")))}
        config, secrets = Path(printed["config"]), Path(printed["secrets"])
        assert config == workdir.resolve() / "msp-hub.toml" and secrets == workdir.resolve() / "secrets.env"
        assert f"  set -a; . {secrets}; set +a" in lines
        assert f"  msp-hub actions --config {config}" in lines
        assert secrets.stat().st_mode & 0o077 == 0, "the secrets file is readable by its owner only"

        # Another shell: the printed lines, nothing else (no variable the demo set in its own process).
        shell = {**env, **_source(secrets)}
        assert "MSP_HUB_DEMO_STRIPE_KEY" in shell
        actions = _cli("actions", "--config", str(config), env=shell, cwd=tmp_path)
        assert actions.returncode == 0, actions.stdout + actions.stderr
        assert "invoice:acme:" in actions.stdout and "sent" in actions.stdout
        plan = _cli("plan", "--config", str(config), env=shell, cwd=tmp_path)
        assert "Acme Dental" in plan.stdout, plan.stdout + plan.stderr
        # A sync reaches the simulators (still up): nothing new to create, no pull error.
        again = _cli("sync", "--config", str(config), "--json", env=shell, cwd=tmp_path)
        assert "connection" not in (again.stdout + again.stderr).lower(), again.stdout + again.stderr

        # The daemon and its admin API, with the token from the same secrets file.
        port = int(next(l for l in config.read_text().splitlines() if l.startswith("port = ")).split("=")[1])
        daemon = subprocess.Popen([sys.executable, "-m", "hub.cli", "daemon", "--config", str(config)],
                                  env=shell, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            headers = {"Authorization": f"Bearer {shell['MSP_HUB_DEMO_ADMIN_TOKEN']}"}
            health = None
            for _ in range(200):
                try:
                    health = httpx.get(f"http://127.0.0.1:{port}/health", headers=headers, timeout=2)
                    break
                except httpx.TransportError:
                    assert daemon.poll() is None, daemon.stderr.read()
                    threading.Event().wait(0.1)
            assert health is not None and health.status_code == 200, health and health.text
            assert {"alerts", "everything"} <= {j["id"] for j in health.json()["scheduler"]["jobs"]}
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
        assert f"http://127.0.0.1:{port}/health" in "\n".join(lines)

        proc.send_signal(signal.SIGINT)
        rest = proc.stdout.read()
        assert proc.wait(timeout=30) == 0, rest
        assert "simulators stopped" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert config.is_file() and secrets.is_file() and (workdir / "demo.db").is_file(), "the folder stays"
