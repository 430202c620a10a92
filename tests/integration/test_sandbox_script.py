"""`make demo` (scripts/sandbox.sh demo) as a person runs it: beside anything already holding the default
probe and metrics ports (a running `make sandbox`, say), and failing at once, with the operator's log,
when the operator exits instead of after a kubectl timeout."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "sandbox.sh"
#: The operator's default probe and metrics ports (issuer/settings.py).
DEFAULT_PORTS = (8080, 9402)


def _script_env(**extra: str) -> dict[str, str]:
    # Nothing of the test session's own token or operator settings leaks in: the script sets up its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRUSTED_ISSUER_", "KUBECONFIG"))}
    return {**env, "VENV": str(ROOT / ".venv"), **extra}


@contextlib.contextmanager
def _default_ports_taken() -> Iterator[None]:
    """Hold 8080 and 9402 on every interface; a port someone else holds already is taken all the same."""
    held = []
    for port in DEFAULT_PORTS:
        sock = socket.socket()
        try:
            sock.bind(("", port))
            sock.listen()
            held.append(sock)
        except OSError:
            sock.close()
    try:
        for port in DEFAULT_PORTS:
            with socket.socket() as probe, contextlib.suppress(OSError):
                probe.bind(("", port))
                raise AssertionError(f"port {port} is still free")
        yield
    finally:
        for sock in held:
            sock.close()


def test_demo_runs_while_the_default_ports_are_taken() -> None:
    with _default_ports_taken():
        done = subprocess.run(
            ["bash", str(SCRIPT), "demo"],
            cwd=ROOT,
            env=_script_env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert ": OK" in done.stdout  # openssl verify of the certificate the operator signed


def test_demo_stops_at_once_with_the_operators_log_when_the_operator_exits() -> None:
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(SCRIPT), "demo"],
        cwd=ROOT,
        # An operator that refuses its settings exits straight away.
        env=_script_env(TRUSTED_ISSUER_WORKERS="0"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "the operator exited (status 2)" in done.stderr
    assert "TRUSTED_ISSUER_WORKERS must be at least 1" in done.stderr  # the tail of its log
    assert elapsed < 60, f"took {elapsed:.0f} s: it waited for kubectl's 90 s timeout"
