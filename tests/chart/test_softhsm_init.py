"""The chart's SoftHSM2 token init script, run as the init container runs it, on a real SoftHSM2."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from issuer.settings import DEFAULT_PKCS11_MODULE
from tests.chart.rendering import CHART

SCRIPT = CHART / "files" / "init-softhsm-token.py"
SO_PIN = "so-pin-4711-secret"
USER_PIN = "user-pin-0815-secret"


@pytest.fixture
def softhsm(tmp_path: Path) -> dict[str, str]:
    if shutil.which("softhsm2-util") is None or not Path(DEFAULT_PKCS11_MODULE).exists():
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")
    config = tmp_path / "softhsm2.conf"
    config.write_text(
        f"directories.tokendir = {tmp_path / 'volume' / 'tokens'}\nobjectstore.backend = file\n"
        "log.level = ERROR\nslots.removable = false\n"
    )
    pins = tmp_path / "pins"
    pins.mkdir()
    (pins / "so-pin").write_text(SO_PIN)  # as kubectl create secret --from-literal stores it: no newline
    (pins / "user-pin").write_text(USER_PIN + "\n")
    return {
        **os.environ,
        "SOFTHSM2_CONF": str(config),
        "TOKEN_LABEL": "trusted-issuer",
        "SO_PIN_FILE": str(pins / "so-pin"),
        "USER_PIN_FILE": str(pins / "user-pin"),
    }


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _login(env: dict[str, str], pin: str) -> subprocess.CompletedProcess[str]:
    """Open the token with python-pkcs11 in a fresh process (SoftHSM2 reads SOFTHSM2_CONF once)."""
    probe = textwrap.dedent(
        f"""
        import sys, pkcs11
        token = pkcs11.lib({DEFAULT_PKCS11_MODULE!r}).get_token(token_label="trusted-issuer")
        with token.open(user_pin=sys.stdin.read()):
            print("logged-in")
        """
    )
    return subprocess.run(
        [sys.executable, "-c", probe],
        env=env,
        input=pin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_creates_the_token_once_from_the_secrets_pins(softhsm: dict[str, str]) -> None:
    first = _run(softhsm)
    assert first.returncode == 0, first.stderr
    assert "token 'trusted-issuer' created" in first.stdout
    assert _login(softhsm, USER_PIN).stdout.strip() == "logged-in"
    assert _login(softhsm, "not-the-pin").returncode != 0

    again = _run(softhsm)  # the pod restarts: the token, and every key in it, is kept
    assert again.returncode == 0, again.stderr
    assert "already exists; keeping it" in again.stdout
    assert _login(softhsm, USER_PIN).stdout.strip() == "logged-in"
    for output in (first.stdout, first.stderr, again.stdout, again.stderr):
        assert SO_PIN not in output and USER_PIN not in output


def test_refuses_an_unusable_pin_file_without_echoing_it(softhsm: dict[str, str], tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("123")
    result = _run({**softhsm, "SO_PIN_FILE": str(short)})
    assert result.returncode != 0
    assert "must be one line of 4 to 255 characters" in result.stderr
    assert "123" not in result.stderr.replace(str(tmp_path), "")
    missing = _run({**softhsm, "USER_PIN_FILE": str(tmp_path / "absent")})
    assert missing.returncode != 0
    assert "cannot read the user PIN file" in missing.stderr
