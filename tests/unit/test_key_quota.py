"""Key quotas: a profile's key capacity split by scope, read from the operator's configuration only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from issuer.errors import ConfigurationError, IssuerError
from issuer.key_quota import KeyQuota, usage
from issuer.profiles import load_profiles
from issuer.settings import Settings

LABELS = [
    "ti:ns/alpha/ca/11111111",
    "ti:ns/alpha/ca/11111111/k1",
    "ti:ns/alpha/import/22222222/wrap",
    "ti:ns/alphabet/ca/33333333",
    "ti:cluster/root/44444444",
    "mesh-root",
]


@pytest.mark.parametrize(
    ("scope", "used"),
    [
        pytest.param("ti:ns/alpha/", 3, id="namespace-counts-signing-rotation-and-wrapping-keys"),
        pytest.param("ti:ns/alphabet/", 1, id="namespace-prefix-ends-at-the-slash"),
        pytest.param("ti:cluster/", 1, id="cluster-issuers-together"),
        pytest.param("ti:ns/beta/", 0, id="empty-scope"),
    ],
)
def test_usage_counts_the_keys_labelled_in_a_scope(scope: str, used: int) -> None:
    assert usage(LABELS, scope, 5).used == used


def test_a_scope_at_its_share_is_refused_and_told_what_to_do() -> None:
    usage(LABELS, "ti:ns/alpha/", 4).check_room("TrustedIssuer alpha/ca", "a key")
    with pytest.raises(IssuerError) as refused:
        usage(LABELS, "ti:ns/alpha/", 3).check_room("TrustedIssuer alpha/ca", "the generation 2 key")
    assert refused.value.reason == "KeyQuotaExceeded"
    assert "holds 3 keys labelled ti:ns/alpha/" in refused.value.message
    assert "quota is 3" in refused.value.message
    usage(LABELS, "ti:ns/alpha/", None).check_room("TrustedIssuer alpha/ca", "a key")  # unbounded


@pytest.mark.parametrize(
    ("data", "limits"),
    [
        pytest.param(None, (None, None, None), id="no-quota-unbounded"),
        pytest.param({"perNamespace": 4}, (4, 4, None), id="per-namespace-only"),
        pytest.param(
            {"perNamespace": 4, "namespaces": {"istio-system": 9}, "clusterIssuers": 2},
            (9, 4, 2),
            id="namespace-override-and-cluster",
        ),
        pytest.param({"clusterIssuers": 0}, (None, None, 0), id="cluster-issuers-closed"),
    ],
)
def test_limits_per_scope(data: Any, limits: tuple[int | None, ...]) -> None:
    quota = KeyQuota.parse(data, "profile")
    assert (quota.limit("istio-system"), quota.limit("team-a"), quota.limit(None)) == limits


@pytest.mark.parametrize(
    "data",
    [
        pytest.param([4], id="not-a-mapping"),
        pytest.param({"perNamspace": 4}, id="misspelt-field"),
        pytest.param({"perNamespace": -1}, id="negative"),
        pytest.param({"perNamespace": "10"}, id="a-string"),
        pytest.param({"perNamespace": True}, id="a-boolean"),
        pytest.param({"namespaces": ["a"]}, id="namespaces-not-a-mapping"),
        pytest.param({"namespaces": {"a": None}}, id="namespace-share-missing"),
    ],
)
def test_a_malformed_quota_is_named(data: Any) -> None:
    with pytest.raises(ConfigurationError, match="keyQuota"):
        KeyQuota.parse(data, "profiles.yaml: profile 'dev'")


def test_a_profiles_file_carries_the_quota(tmp_path: Path) -> None:
    path = tmp_path / "profiles.yaml"
    profile = {"tokenLabel": "t", "pinFile": "/p", "keyQuota": {"perNamespace": 3, "clusterIssuers": 5}}
    path.write_text(yaml.safe_dump({"profiles": {"dev": profile}}))
    quota = load_profiles(path, Settings.from_env({})).get("dev").key_quota
    assert (quota.limit("any"), quota.limit(None)) == (3, 5)
