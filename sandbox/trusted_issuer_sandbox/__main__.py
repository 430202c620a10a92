"""``python -m trusted_issuer_sandbox``: serve a sandbox until interrupted, and write a kubeconfig for it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from trusted_issuer_sandbox import CERTIFICATE_REQUEST_CRD, Sandbox


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m trusted_issuer_sandbox",
        description="Serve a local sandbox Kubernetes API on plain http.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: any free port)")
    parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig for the sandbox here")
    parser.add_argument(
        "--crd", type=Path, action="append", default=[], metavar="FILE", help="load the CRDs of a YAML file"
    )
    parser.add_argument(
        "--cert-manager", action="store_true", help="load cert-manager's CertificateRequest CRD (bundled)"
    )
    parser.add_argument(
        "--bookmark-interval", type=float, default=60.0, help="seconds between watch bookmarks"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every API call")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Serve until SIGINT or SIGTERM."""
    crds = [*([CERTIFICATE_REQUEST_CRD] if args.cert_manager else []), *args.crd]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Sandbox(
        crds=crds, host=args.host, port=args.port, bookmark_interval=args.bookmark_interval
    ) as sandbox:
        print(f"sandbox: serving {sandbox.url}", flush=True)
        if args.kubeconfig is not None:
            path = sandbox.write_kubeconfig(args.kubeconfig.resolve())
            print(f"export KUBECONFIG={path}", flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """The command line entry point; returns the exit code."""
    args = _parse(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
