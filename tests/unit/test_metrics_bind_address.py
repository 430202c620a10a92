"""/metrics listens only where TRUSTED_ISSUER_METRICS_BIND_ADDRESS says: its labels name every tenant's
issuers, and it has no authentication, so an operator outside a pod can keep it on loopback."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from issuer import metrics
from issuer.errors import ConfigurationError
from issuer.settings import Settings


def test_bind_address_defaults_to_every_interface_and_is_read_from_the_environment() -> None:
    assert Settings.from_env({}).metrics_bind_address == "0.0.0.0"  # noqa: S104  # a pod's scraper needs it
    env = {"TRUSTED_ISSUER_METRICS_BIND_ADDRESS": "127.0.0.1"}
    assert Settings.from_env(env).metrics_bind_address == "127.0.0.1"
    assert Settings.from_env({"TRUSTED_ISSUER_METRICS_BIND_ADDRESS": "::1"}).metrics_bind_address == "::1"


@pytest.mark.parametrize("value", ["localhost", "0.0.0.0:9402", "10.0.0.300", "*"])
def test_bind_address_must_be_an_ip_address(value: str) -> None:
    with pytest.raises(ConfigurationError, match="METRICS_BIND_ADDRESS must be an IP address"):
        Settings.from_env({"TRUSTED_ISSUER_METRICS_BIND_ADDRESS": value})


def _free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def test_metrics_answer_on_the_bound_address_only() -> None:
    # All of 127.0.0.0/8 is loopback on Linux: bound to 127.0.0.2, the server must refuse 127.0.0.1.
    registry = CollectorRegistry()
    Counter("bind_probe", "a metric only this test's registry has", registry=registry).inc()
    port = _free_port("127.0.0.2")
    metrics.serve(port, registry, address="127.0.0.2")
    with urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=10) as response:
        assert "bind_probe_total 1.0" in response.read().decode()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=10):
        pass
