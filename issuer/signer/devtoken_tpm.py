"""A development TPM 2.0 token: swtpm (a software TPM) behind tpm2-abrmd, with tpm2-pkcs11's store.

swtpm listens on two loopback ports; tpm2-abrmd, the TPM's access broker and resource manager, serves
it on a private D-Bus session bus (without it the TPM's object slots run out after 3-4 keys, 0x902);
tpm2-pkcs11 reaches the broker through ``TPM2_PKCS11_TCTI=tabrmd:bus_type=session`` and keeps its
token in a SQLite store. All of it lives under the token's directory, and its daemons run until
:meth:`TpmDevToken.stop` (or are started again by the next :func:`init_tpm_token`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from issuer.errors import ConfigurationError
from issuer.signer.devtoken import TokenFiles, write_secret

TPM_MODULE = "/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so"
PACKAGES = "swtpm tpm2-abrmd libtpm2-pkcs11-1 libtpm2-pkcs11-tools tpm2-tools libtss2-tcti-tabrmd0 dbus"
_TCTI = "tabrmd:bus_type=session"
# tpm2_ptool is a Python program of the system's python3; run in-process there so that the PINs it is
# given travel on stdin, never in any process's arguments.
_PTOOL = (
    "import json, sys; sys.argv = json.loads(sys.stdin.readline()); "
    "from tpm2_pkcs11.tpm2_ptool import main; main()"
)


@dataclass(frozen=True)
class TpmDevToken(TokenFiles):
    """Where a TPM development token lives and how to reach it."""

    backend = "tpm"
    module = TPM_MODULE

    @property
    def store(self) -> Path:
        return self.directory / "store"

    @property
    def bus(self) -> Path:
        return self.directory / "bus"

    @property
    def _processes(self) -> Path:
        return self.directory / "processes.json"

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            "TPM2_PKCS11_STORE": str(self.store),
            "TPM2_PKCS11_TCTI": _TCTI,
            "TPM2TOOLS_TCTI": _TCTI,  # tpm2_ptool drives tpm2-tools
            "DBUS_SESSION_BUS_ADDRESS": f"unix:path={self.bus}",
            # The TSS and tpm2-pkcs11 print every refused call to stderr; errors reach us as CKRs.
            "TSS2_LOG": "all+none",
            "TPM2_PKCS11_LOG_LEVEL": "0",
        }

    def running(self) -> bool:
        pids = self._pids()
        return bool(pids) and all(_alive(pid) for pid in pids.values())

    def stop(self) -> None:
        """Stop the broker, the bus and the TPM (its state stays on disk for the next start)."""
        for name in ("abrmd", "dbus", "swtpm"):
            pid = self._pids().get(name)
            if pid and _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                _wait_gone(pid)
        self._processes.unlink(missing_ok=True)

    def _pids(self) -> dict[str, int]:
        try:
            return {k: int(v) for k, v in json.loads(self._processes.read_text()).items()}
        except (OSError, ValueError):
            return {}

    def start(self) -> None:
        """Start swtpm, a private D-Bus and tpm2-abrmd, unless they all run already."""
        if self.running():
            return
        self.stop()
        for tool in ("swtpm", "dbus-daemon", "tpm2-abrmd"):
            if shutil.which(tool) is None:
                raise ConfigurationError(f"{tool} is not installed: apt-get install {PACKAGES}")
        state = self.directory / "state"
        state.mkdir(parents=True, exist_ok=True)
        port = _free_port_pair()
        log = self.directory / "daemons.log"
        subprocess.run(
            [
                "swtpm", "socket", "--tpm2", "--daemon",
                "--tpmstate", f"dir={state}",
                "--server", f"type=tcp,port={port},bindaddr=127.0.0.1",
                "--ctrl", f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
                "--flags", "not-need-init,startup-clear",
                "--pid", f"file={self.directory / 'swtpm.pid'}",
                "--log", f"file={log}",
            ],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        pids = {"swtpm": int((self.directory / "swtpm.pid").read_text().strip())}
        self.bus.unlink(missing_ok=True)
        dbus = subprocess.run(
            [
                "dbus-daemon", "--config-file=/usr/share/dbus-1/session.conf",
                f"--address=unix:path={self.bus}", "--fork", "--nopidfile", "--print-pid=1",
            ],
            check=True, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        pids["dbus"] = int(dbus.stdout.split()[0])
        with log.open("ab") as out:
            broker = subprocess.Popen(
                ["tpm2-abrmd", "--session", "--allow-root", f"--tcti=swtpm:host=127.0.0.1,port={port}"],
                env={**os.environ, **self.env()},
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        pids["abrmd"] = broker.pid
        self._processes.write_text(json.dumps(pids))
        self._wait_for_broker()
        self._relax_lockout()

    def _relax_lockout(self) -> None:
        """A development TPM forgives wrong PINs: each one counts against the TPM's dictionary-attack
        counter, and a real TPM locks every key after a few (the tests try wrong PINs on purpose).
        Up to 1000 failures, each forgotten after a second; a TPM in production keeps its own policy."""
        env = {**os.environ, **self.env()}
        for args in (
            ["--setup-parameters", "--max-tries=1000", "--recovery-time=1", "--lockout-recovery-time=1"],
            ["--clear-lockout"],
        ):
            done = subprocess.run(
                ["tpm2_dictionarylockout", *args],
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
            )
            if done.returncode != 0:
                raise ConfigurationError(
                    f"tpm2_dictionarylockout {args[0]} failed: {done.stderr.strip()[-200:]}"
                )

    def _wait_for_broker(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus",
                 "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner",
                 "string:com.intel.tss2.Tabrmd"],
                env={**os.environ, **self.env()}, capture_output=True, text=True, check=False, timeout=10,
            )  # fmt: skip
            if "boolean true" in probe.stdout:
                return
            time.sleep(0.1)
        self.stop()
        raise ConfigurationError(f"tpm2-abrmd did not start: see {self.directory / 'daemons.log'}")

    def ptool(self, *args: str) -> str:
        """Run ``tpm2_ptool`` with ``args`` (PINs among them) passed on stdin."""
        argv = ["tpm2_ptool", *args, f"--path={self.store}"]
        done = subprocess.run(
            ["/usr/bin/python3", "-c", _PTOOL],
            input=json.dumps(argv) + "\n",
            env={**os.environ, **self.env()},
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        del argv
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ConfigurationError(f"tpm2_ptool {args[0]} failed: {last}")
        return done.stdout


def init_tpm_token(directory: Path, label: str) -> tuple[TpmDevToken, bool]:
    """Start the TPM and its broker, and create the token if it is not there yet."""
    token = TpmDevToken(directory.resolve(), label)
    if shutil.which("tpm2_ptool") is None or not Path(TPM_MODULE).exists():
        raise ConfigurationError(f"tpm2-pkcs11 is not installed: apt-get install {PACKAGES}")
    token.directory.mkdir(parents=True, exist_ok=True)
    token.directory.chmod(0o700)
    token.store.mkdir(exist_ok=True)
    token.start()
    if token.pin_file.exists() and f"label: {label}\n" in token.ptool("listtokens", "--pid=1") + "\n":
        return token, False
    if not (token.store / "tpm2_pkcs11.sqlite3").exists() or "id:" not in token.ptool("listprimaries"):
        token.ptool("init")
    user_pin, so_pin = secrets.token_hex(12), secrets.token_hex(12)
    write_secret(token.pin_file, user_pin)
    write_secret(token.so_pin_file, so_pin)
    token.ptool("addtoken", "--pid=1", f"--label={label}", f"--sopin={so_pin}", f"--userpin={user_pin}")
    del user_pin, so_pin
    return token, True


def _free_port_pair() -> int:
    """A loopback port whose successor is free too (swtpm's server and control ports)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return int(port)
    raise ConfigurationError("no two adjacent free loopback ports for swtpm")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours (the broker) is not alive.
    with contextlib.suppress(ChildProcessError, OSError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return True


def _wait_gone(pid: int, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
