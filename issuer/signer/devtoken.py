"""A development SoftHSM2 token under a project-local directory (never the system token store).

The PINs are random, written to files readable only by their owner, and handed to ``softhsm2-util``
through a pseudo-terminal: they never appear in process arguments or on the screen.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from issuer.errors import ConfigurationError

DEFAULT_DIR = Path(".dev/softhsm")
DEFAULT_LABEL = "trusted-issuer-dev"


@dataclass(frozen=True)
class DevToken:
    """Where a development token lives; ``env()`` is what a shell must export to use it."""

    directory: Path
    label: str

    @property
    def config_file(self) -> Path:
        return self.directory / "softhsm2.conf"

    @property
    def token_dir(self) -> Path:
        return self.directory / "tokens"

    @property
    def pin_file(self) -> Path:
        return self.directory / "user.pin"

    @property
    def so_pin_file(self) -> Path:
        return self.directory / "so.pin"

    def env(self) -> dict[str, str]:
        return {
            "SOFTHSM2_CONF": str(self.config_file),
            "TRUSTED_ISSUER_TOKEN_LABEL": self.label,
            "TRUSTED_ISSUER_PIN_FILE": str(self.pin_file),
        }


def _write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")


def _softhsm_util() -> str:
    found = shutil.which("softhsm2-util")
    if found is None:
        raise ConfigurationError("softhsm2-util is not installed: apt-get install softhsm2")
    return found


def token_exists(token: DevToken) -> bool:
    if not token.config_file.exists():
        return False
    env = {**os.environ, "SOFTHSM2_CONF": str(token.config_file)}
    shown = subprocess.run(
        [_softhsm_util(), "--show-slots"], env=env, capture_output=True, text=True, check=False, timeout=30
    )
    labels = [line.split(":", 1)[1].strip() for line in shown.stdout.splitlines() if "Label:" in line]
    return token.label in labels


def init_dev_token(directory: Path = DEFAULT_DIR, label: str = DEFAULT_LABEL) -> tuple[DevToken, bool]:
    """Create the token if it is not there yet; returns the token and whether it was created now."""
    token = DevToken(directory.resolve(), label)
    if token_exists(token) and token.pin_file.exists():
        return token, False
    token.token_dir.mkdir(parents=True, exist_ok=True)
    token.directory.chmod(0o700)
    token.config_file.write_text(
        f"directories.tokendir = {token.token_dir}\nobjectstore.backend = file\nlog.level = ERROR\n"
        "slots.removable = false\n",
        encoding="utf-8",
    )
    user_pin = secrets.token_hex(12)
    so_pin = secrets.token_hex(12)
    _write_secret(token.pin_file, user_pin)
    _write_secret(token.so_pin_file, so_pin)
    answers = f"{so_pin}\n{so_pin}\n{user_pin}\n{user_pin}\n".encode()
    controller, terminal = os.openpty()
    try:
        process = subprocess.Popen(
            [_softhsm_util(), "--init-token", "--free", "--label", label],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **token.env()},
        )
        os.close(terminal)
        terminal = -1
        os.write(controller, answers)
        output, _ = process.communicate(timeout=60)
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    del answers, user_pin, so_pin
    if process.returncode != 0:
        last = output.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise ConfigurationError(f"softhsm2-util could not create the token: {last[0]}")
    return token, True
