"""Create the SoftHSM2 token of the softhsm backend once (the chart's init container runs this).

What `trusted-issuer hsm init-dev-token` does, with the PINs of an existing Secret instead of random
ones: the SO and user PINs are read from mounted files and handed to ``softhsm2-util`` through a
pseudo-terminal, so they never appear in process arguments, the environment or the log. A token
that already exists is left alone, so restarts keep the CA keys.

Environment: SOFTHSM2_CONF (its ``directories.tokendir`` is created), TOKEN_LABEL, SO_PIN_FILE,
USER_PIN_FILE. Standard library only: it runs in the operator image.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path


def token_dir(config: Path) -> Path:
    for line in config.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s*directories\.tokendir\s*=\s*(\S.*?)\s*$", line)
        if match:
            return Path(match.group(1))
    raise SystemExit(f"init-softhsm-token: {config} names no directories.tokendir")


def read_pin(path: Path, what: str) -> str:
    try:
        pin = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as err:
        raise SystemExit(f"init-softhsm-token: cannot read the {what} file {path}: {err.strerror}") from None
    if not 4 <= len(pin) <= 255 or "\n" in pin:
        raise SystemExit(f"init-softhsm-token: the {what} in {path} must be one line of 4 to 255 characters")
    return pin


def token_labels(util: str) -> list[str]:
    shown = subprocess.run([util, "--show-slots"], capture_output=True, text=True, check=False, timeout=60)
    return [line.split(":", 1)[1].strip() for line in shown.stdout.splitlines() if "Label:" in line]


def create_token(util: str, label: str, so_pin: str, user_pin: str) -> None:
    answers = f"{so_pin}\n{so_pin}\n{user_pin}\n{user_pin}\n".encode()
    controller, terminal = os.openpty()
    try:
        process = subprocess.Popen(
            [util, "--init-token", "--free", "--label", label],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        os.close(terminal)
        terminal = -1
        os.write(controller, answers)
        output, _ = process.communicate(timeout=120)
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    if process.returncode != 0:
        last = output.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"init-softhsm-token: softhsm2-util could not create the token: {last[0]}")


def main() -> int:
    config = Path(os.environ["SOFTHSM2_CONF"])
    label = os.environ["TOKEN_LABEL"]
    util = shutil.which("softhsm2-util")
    if util is None:
        raise SystemExit("init-softhsm-token: softhsm2-util is not in the image")
    token_dir(config).mkdir(parents=True, exist_ok=True)
    if label in token_labels(util):
        print(f"init-softhsm-token: token {label!r} already exists; keeping it")
        return 0
    so_pin = read_pin(Path(os.environ["SO_PIN_FILE"]), "SO PIN")
    user_pin = read_pin(Path(os.environ["USER_PIN_FILE"]), "user PIN")
    create_token(util, label, so_pin, user_pin)
    if label not in token_labels(util):
        raise SystemExit(f"init-softhsm-token: softhsm2-util reported success but token {label!r} is absent")
    print(f"init-softhsm-token: token {label!r} created")
    return 0


if __name__ == "__main__":
    sys.exit(main())
