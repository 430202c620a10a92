"""The metrics operators alert on: Prometheus conventions, and every one documented."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from issuer import metrics

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def _families() -> dict[str, str]:
    """Exposed name (as a scrape shows it) -> type, for every trusted_issuer_ metric."""
    metrics.watch_pool(lambda: 2.0, lambda: 1.0)
    exposed = {}
    for family in text_string_to_metric_families(generate_latest(REGISTRY).decode()):
        # prometheus_client adds a ``<counter>_created`` gauge beside each unlabelled counter.
        if family.name.startswith("trusted_issuer_") and not family.name.endswith("_created"):
            suffix = "_total" if family.type == "counter" else ""
            exposed[family.name + suffix] = family.type
    return exposed


def test_names_follow_prometheus_conventions() -> None:
    families = _families()
    assert len(families) >= 12
    for name, kind in families.items():
        assert name.endswith("_total") == (kind == "counter"), name
        if kind == "histogram":
            assert name.endswith("_seconds"), name
    assert families["trusted_issuer_signing_worker_restarts_total"] == "counter"


def test_every_metric_is_in_the_operations_guide() -> None:
    documented = DOCS.read_text()
    missing = [name for name in _families() if f"`{name}`" not in documented]
    assert not missing, f"docs/operations.md does not list {missing}"
