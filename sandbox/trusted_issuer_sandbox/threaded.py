"""A sandbox on its own event loop and thread, for synchronous callers and for kopf."""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Any

from trusted_issuer_sandbox.server import Sandbox


class SandboxThread:
    """Runs a ``Sandbox`` on its own event loop in a daemon thread: ``with SandboxThread() as sandbox``.

    For synchronous code (kubectl, the kubernetes client), and for kopf: at exit, kopf waits for and
    then cancels every task created in its event loop after it started, which would include the
    connections of a sandbox in the same loop. The sandbox's Python API (``put_object``, ``faults``,
    ``access_policy``, ``calls``, ``store``) is safe to use from the calling thread.
    """

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._sandbox: Sandbox | None = None
        self._failure: BaseException | None = None

    def __enter__(self) -> Sandbox:
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), name="sandbox", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("the sandbox did not start within 30 seconds")
        if self._failure is not None or self._sandbox is None:
            raise RuntimeError("the sandbox failed to start") from self._failure
        return self._sandbox

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=30)

    async def _main(self) -> None:
        try:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with Sandbox(**self._options) as sandbox:
                self._sandbox = sandbox
                self._ready.set()
                await self._stop.wait()
        except BaseException as e:
            self._failure = e
            raise
        finally:
            self._ready.set()
