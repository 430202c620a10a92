"""A development opencryptoki token: its soft token (slot 3), served by the machine's pkcsslotd.

opencryptoki keeps fixed paths (``/var/lib/opencryptoki/swtok``) and one slot daemon per machine, so
there is exactly one soft token: a new development token re-initialises it (C_InitToken), which
destroys whatever it held, unless it already carries our label and our PIN file. PINs are 4 to 8
characters there; ours are 8 random letters and digits, written to files only their owner reads and
typed into ``pkcsconf`` through a pseudo-terminal.
"""

from __future__ import annotations

import os
import secrets
import shutil
import string
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from issuer.errors import ConfigurationError
from issuer.signer.devtoken import TokenFiles, answer_prompts, write_secret

OPENCRYPTOKI_MODULE = "/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so"
SOFT_TOKEN_SLOT = "3"  # noqa: S105  # a slot number, not a password
#: The SO PIN of a never-initialised soft token, as opencryptoki ships it.
_FACTORY_SO_PIN = "87654321"
_PIN_ALPHABET = string.ascii_letters + string.digits
SOFT_TOKEN_STORE = Path("/var/lib/opencryptoki/swtok")


@dataclass(frozen=True)
class OpencryptokiDevToken(TokenFiles):
    """The machine's opencryptoki soft token, with our label and PIN files (pkcsslotd serves the whole
    machine: ``stop`` leaves it running)."""

    backend = "opencryptoki"
    module = OPENCRYPTOKI_MODULE


def _pin() -> str:
    return "".join(secrets.choice(_PIN_ALPHABET) for _ in range(8))


def _slot_daemon() -> None:
    """Start pkcsslotd unless it runs (it must, for any opencryptoki token to be seen)."""
    if shutil.which("pkcsslotd") is None or not Path(OPENCRYPTOKI_MODULE).exists():
        raise ConfigurationError("opencryptoki is not installed: apt-get install opencryptoki")
    if subprocess.run(["pgrep", "-x", "pkcsslotd"], capture_output=True, check=False).returncode == 0:
        return
    if os.geteuid() != 0:
        raise ConfigurationError("pkcsslotd is not running: start it as root (systemctl start pkcsslotd)")
    started = subprocess.run(["pkcsslotd"], capture_output=True, text=True, check=False, timeout=30)
    if started.returncode != 0:
        raise ConfigurationError(f"pkcsslotd did not start: {started.stderr.strip() or started.returncode}")
    for _ in range(100):  # serving once pkcsconf sees the slot
        shown = subprocess.run(
            ["pkcsconf", "-t", "-c", SOFT_TOKEN_SLOT], capture_output=True, check=False, timeout=30
        )
        if shown.returncode == 0:
            return
        time.sleep(0.1)
    raise ConfigurationError("pkcsslotd started but serves no slot 3 within 10 s")


def soft_token() -> tuple[str, bool]:
    """The soft token's label and whether it was ever initialised, as pkcsconf shows them."""
    shown = subprocess.run(
        ["pkcsconf", "-t", "-c", SOFT_TOKEN_SLOT], capture_output=True, text=True, check=False, timeout=30
    )
    label, initialised = None, False
    for line in shown.stdout.splitlines():
        name, _, value = line.strip().partition(":")
        if name == "Label":
            label = value.strip()
        elif name == "Flags":
            initialised = "TOKEN_INITIALIZED" in value
    if label is None:
        raise ConfigurationError(f"pkcsconf shows no token in slot {SOFT_TOKEN_SLOT}: {shown.stderr.strip()}")
    return label, initialised


def _wipe_soft_token() -> None:
    """Return the soft token to its factory state: its files removed, the slot daemon restarted.
    (opencryptoki 3.8.1's C_InitToken of an initialised soft token leaves an SO login that fails
    with CKR_FUNCTION_FAILED, measured: a fresh store is the one reliable way.)"""
    if os.geteuid() != 0:
        raise ConfigurationError("re-initialising opencryptoki's soft token needs root")
    subprocess.run(["pkill", "-x", "pkcsslotd"], check=False)
    for _ in range(50):
        if subprocess.run(["pgrep", "-x", "pkcsslotd"], capture_output=True, check=False).returncode:
            break
        time.sleep(0.1)
    for name in ("MK_SO", "MK_USER", "NVTOK.DAT"):
        (SOFT_TOKEN_STORE / name).unlink(missing_ok=True)
    for stored in (SOFT_TOKEN_STORE / "TOK_OBJ").glob("*"):
        stored.unlink()
    _slot_daemon()


def _pkcsconf(what: str, flag: str, answers: list[str]) -> None:
    status, last = answer_prompts(["pkcsconf", flag, "-c", SOFT_TOKEN_SLOT], answers)
    if status != 0:
        raise ConfigurationError(f"pkcsconf could not {what}: {last}")


def init_opencryptoki_token(
    directory: Path, label: str, *, reset: bool = False
) -> tuple[OpencryptokiDevToken, bool]:
    """Make the soft token ours (see the module docstring) unless it is already. A token initialised
    by someone else is refused unless ``reset`` (root only) returns it to its factory state first."""
    if not 1 <= len(label) <= 32:
        raise ConfigurationError(f"token label {label!r} must have 1 to 32 characters")
    token = OpencryptokiDevToken(directory.resolve(), label)
    _slot_daemon()
    current, initialised = soft_token()
    if current == label and token.pin_file.exists():
        return token, False
    if initialised:
        if not reset:
            raise ConfigurationError(
                f"opencryptoki's soft token is initialised already (label {current!r}) and is not this "
                f"one: there is one per machine; pass --reset (root) to wipe it and make {label!r}"
            )
        _wipe_soft_token()
    token.directory.mkdir(parents=True, exist_ok=True)
    token.directory.chmod(0o700)
    _pkcsconf("initialise the soft token", "-I", [_FACTORY_SO_PIN, label])
    so_pin, user_pin = _pin(), _pin()
    _pkcsconf("set the SO PIN", "-P", [_FACTORY_SO_PIN, so_pin, so_pin])
    write_secret(token.so_pin_file, so_pin)
    _pkcsconf("set the user PIN", "-u", [so_pin, user_pin, user_pin])
    write_secret(token.pin_file, user_pin)
    del so_pin, user_pin
    return token, True
