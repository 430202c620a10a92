"""A signing worker whose parent dies with a reply unread exits quietly: the parent's end is reset, not
closed, and that is the parent's death, not a worker error (no ConnectionResetError traceback)."""

from __future__ import annotations

import multiprocessing
import pickle
import subprocess
import sys
from multiprocessing.connection import Connection

import pytest

from issuer.signer import worker
from issuer.signer.pool import _WORKER_PROGRAM


def _ask_then_vanish(parent_end: Connection) -> None:
    """Send one task, wait until its reply is in our end's buffer, and close without reading it: the
    kernel resets the worker's end, as when the operator dies mid-task."""
    parent_end.send_bytes((1).to_bytes(worker.TASK_ID_BYTES) + pickle.dumps((worker.ping, ())))
    assert parent_end.poll(60), "the worker never answered"
    parent_end.close()


def test_an_executed_worker_exits_quietly() -> None:
    # How the pool starts workers by default: a fresh interpreter running worker.main on its pipe end.
    parent_end, child_end = multiprocessing.Pipe(duplex=True)
    parent_end.send(sys.path)
    process = subprocess.Popen(
        [sys.executable, "-c", _WORKER_PROGRAM, str(child_end.fileno())],
        pass_fds=(child_end.fileno(),),
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    child_end.close()
    _ask_then_vanish(parent_end)
    _, stderr = process.communicate(timeout=60)
    assert (process.returncode, stderr) == (0, "")


def test_a_multiprocessing_worker_exits_quietly(capfd: pytest.CaptureFixture[str]) -> None:
    # Under forkserver the worker's pipe is a multiprocessing Connection, which raises the reset itself.
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe(duplex=True)
    process = context.Process(target=worker.serve, args=(child_end,), daemon=True)
    process.start()
    child_end.close()
    _ask_then_vanish(parent_end)
    process.join(60)
    assert process.exitcode == 0
    assert "Traceback" not in capfd.readouterr().err
