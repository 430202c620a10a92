"""Development tokens: SoftHSM2 (the default), a TPM 2.0 simulator, opencryptoki's soft token.

Each lives under a project-local directory (never the system token store; opencryptoki has one soft
token per machine, see ``devtoken_opencryptoki``). The PINs are random, written to files readable
only by their owner, and handed to the tools through a pseudo-terminal or stdin: they never appear in
process arguments or on the screen.
"""

from __future__ import annotations

import os
import secrets
import select
import shutil
import subprocess
import termios
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from issuer.errors import ConfigurationError

DEFAULT_DIR = Path(".dev/softhsm")
DEFAULT_LABEL = "trusted-issuer-dev"
BACKENDS = ("softhsm", "tpm", "opencryptoki")
BACKEND_DIRS = {"softhsm": DEFAULT_DIR, "tpm": Path(".dev/tpm"), "opencryptoki": Path(".dev/opencryptoki")}
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


@dataclass(frozen=True)
class TokenFiles:
    """A development token's directory and label, the PIN files in it, and what every backend exports."""

    directory: Path
    label: str
    module = SOFTHSM_MODULE

    @property
    def pin_file(self) -> Path:
        return self.directory / "user.pin"

    @property
    def so_pin_file(self) -> Path:
        return self.directory / "so.pin"

    def env(self) -> dict[str, str]:
        return {
            "TRUSTED_ISSUER_PKCS11_MODULE": self.module,
            "TRUSTED_ISSUER_TOKEN_LABEL": self.label,
            "TRUSTED_ISSUER_PIN_FILE": str(self.pin_file),
        }

    def stop(self) -> None:
        """Nothing runs for this token: it is files and a library (a backend with daemons stops them)."""


@dataclass(frozen=True)
class DevToken(TokenFiles):
    """A SoftHSM2 development token; ``env()`` is what a shell must export to use it."""

    backend = "softhsm"

    @property
    def config_file(self) -> Path:
        return self.directory / "softhsm2.conf"

    @property
    def token_dir(self) -> Path:
        return self.directory / "tokens"

    def env(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": str(self.config_file), **super().env()}


@contextmanager
def exported(token: AnyDevToken) -> Iterator[None]:
    """The token's environment in ``os.environ`` for the block (signing workers spawned inside inherit
    it), then the environment as it was."""
    saved = {name: os.environ.get(name) for name in token.env()}
    os.environ.update(token.env())
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def write_secret(path: Path, value: str) -> None:
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


def answer_prompts(argv: list[str], answers: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``argv`` on a pseudo-terminal and write each answer (a PIN) when the tool prompts for it
    (its output ends in a colon); the answers never reach its arguments. Returns its exit status and
    the last line it printed (prompts and answers are not echoed: tools turn echo off for PINs)."""
    controller, terminal = os.openpty()
    output = b""
    try:
        process = subprocess.Popen(argv, stdin=terminal, stdout=terminal, stderr=terminal, env=env)
        os.close(terminal)
        terminal = -1
        pending = list(answers)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:
                    break  # the tool exited and closed the terminal
                if not chunk:
                    break
                output += chunk
                if pending and output.rstrip().endswith(b":"):
                    _await_echo_off(controller)
                    os.write(controller, pending.pop(0).encode() + b"\n")
                    output += b"\n"
            elif process.poll() is not None:
                break
        try:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            seen = output.decode(errors="replace").strip().splitlines()[-1:] or ["nothing"]
            raise ConfigurationError(
                f"{argv[0]} did not finish within a minute (it last printed {seen[0].strip()!r})"
            ) from None
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    del answers
    lines = [line for line in output.decode(errors="replace").strip().splitlines() if line.strip()]
    return process.returncode, (lines[-1].strip() if lines else "no output")


def _await_echo_off(controller: int, seconds: float = 0.5) -> None:
    """Wait until the tool turned echo off for a PIN (pkcsconf does so after printing its prompt, with
    TCSAFLUSH: an answer written before that is discarded and the tool waits for ever), or, for a
    prompt that is not for a PIN, until ``seconds`` passed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not termios.tcgetattr(controller)[3] & termios.ECHO:
            time.sleep(0.02)  # the flush comes with the change: let it pass
            return
        time.sleep(0.01)


def init_dev_token(
    directory: Path = DEFAULT_DIR,
    label: str = DEFAULT_LABEL,
    backend: str = "softhsm",
    *,
    reset: bool = False,
) -> tuple[AnyDevToken, bool]:
    """Create the token if it is not there yet (and start what it needs to run); returns the token
    and whether it was created now. ``reset`` lets opencryptoki's one soft token be wiped first."""
    if backend == "tpm":
        from issuer.signer.devtoken_tpm import init_tpm_token

        return init_tpm_token(directory, label)
    if backend == "opencryptoki":
        from issuer.signer.devtoken_opencryptoki import init_opencryptoki_token

        return init_opencryptoki_token(directory, label, reset=reset)  # type: ignore[no-any-return]
    if backend != "softhsm":
        raise ConfigurationError(f"unknown token backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    return init_softhsm_token(directory, label)


def init_softhsm_token(directory: Path, label: str) -> tuple[DevToken, bool]:
    """The SoftHSM2 development token (see :func:`init_dev_token`)."""
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
    write_secret(token.pin_file, user_pin)
    write_secret(token.so_pin_file, so_pin)
    status, last = answer_prompts(
        [_softhsm_util(), "--init-token", "--free", "--label", label],
        [so_pin, so_pin, user_pin, user_pin],
        {**os.environ, **token.env()},
    )
    del user_pin, so_pin
    if status != 0:
        raise ConfigurationError(f"softhsm2-util could not create the token: {last}")
    return token, True


class AnyDevToken(Protocol):
    """What every development token offers: where its module and PIN are, and how to use it."""

    @property
    def label(self) -> str: ...
    @property
    def backend(self) -> str: ...
    @property
    def module(self) -> str: ...
    @property
    def pin_file(self) -> Path: ...
    def env(self) -> dict[str, str]: ...
    def stop(self) -> None: ...
