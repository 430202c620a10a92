"""Watching a burst from outside: every certificate value ever published on each request of one
namespace, so a test can prove each request was published exactly once and none was lost."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

import requests

from tests.operator.kube import Kube, condition, pem
from tests.verifiers import openssl_verify


class Publications:
    """A watch, opened before the burst, recording every certificate value each request ever carried."""

    def __init__(self, kube: Kube, path: str) -> None:
        self.path = path
        self.certificates: dict[str, set[str]] = defaultdict(set)
        self.failed: set[str] = set()
        self._stop = threading.Event()
        start = kube.get(path)["metadata"]["resourceVersion"]
        # Its own connection: the test's client keeps creating and approving meanwhile.
        self._thread = threading.Thread(target=self._run, args=(Kube(kube.base), path, start), daemon=True)
        self._thread.start()

    def _run(self, kube: Kube, path: str, start: str) -> None:
        while not self._stop.is_set():
            try:
                for event in kube.watch_events(path, self._stop, start):
                    obj = event.get("object", {})
                    name = obj.get("metadata", {}).get("name")
                    if obj.get("status", {}).get("certificate"):
                        self.certificates[name].add(obj["status"]["certificate"])
                    if condition(obj).get("reason") == "Failed":
                        self.failed.add(name)
                    start = obj.get("metadata", {}).get("resourceVersion", start)
            except (requests.RequestException, ValueError):
                continue  # a dropped watch (the tests' own watch may be faulted too): resume

    def stop(self) -> None:
        time.sleep(1)  # let the last versions arrive
        self._stop.set()
        self._thread.join(timeout=30)

    def assert_each_published_once(
        self, kube: Kube, names: list[str], ca_pem: bytes | None = None
    ) -> dict[str, dict[str, Any]]:
        """Stop watching; every request of ``names`` (and no other) is Issued, with the one certificate
        value the watch ever saw on it, and a sample verifies with openssl. Returns the requests."""
        self.stop()
        items = {item["metadata"]["name"]: item for item in kube.get(self.path)["items"]}
        assert sorted(items) == sorted(names), "requests were lost or added"
        assert not self.failed, f"requests failed: {sorted(self.failed)}"
        not_issued = {n: condition(i) for n, i in items.items() if condition(i).get("reason") != "Issued"}
        assert not not_issued, f"{len(not_issued)} not issued, e.g. {list(not_issued.items())[:3]}"
        for name, item in items.items():
            assert self.certificates[name] == {item["status"]["certificate"]}, (
                f"{name} published more than once"
            )
        sample = items[names[-1]]["status"]
        openssl_verify(pem(sample["certificate"]), ca_pem or pem(sample["ca"]))
        return items


def issued_count(kube: Kube, path: str) -> int:
    """Requests under ``path`` that carry a certificate now."""
    return sum(1 for item in kube.get(path)["items"] if item.get("status", {}).get("certificate"))
