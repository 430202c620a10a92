"""TRUSTED_ISSUER_ISSUER_KINDS and ``run --namespace``: which issuers, and so which requests, a release
serves (sharding). Pure: the runtime's pool, client and profiles are never reached, so they are left out."""

from __future__ import annotations

from typing import Any, cast

import pytest

from issuer import api
from issuer.clock import utcnow
from issuer.controller.registry import IssuerRegistry, issuer_ref
from issuer.controller.runtime import Runtime
from issuer.errors import ConfigurationError
from issuer.settings import Settings, issuer_kinds_from_env

ENV = "TRUSTED_ISSUER_ISSUER_KINDS"


def test_both_kinds_by_default_and_a_subset_when_named() -> None:
    assert issuer_kinds_from_env({}) == api.ISSUER_KINDS
    assert issuer_kinds_from_env({ENV: " TrustedClusterIssuer "}) == ("TrustedClusterIssuer",)
    both = "TrustedIssuer,TrustedClusterIssuer,TrustedIssuer"
    assert Settings.from_env({ENV: both}).issuer_kinds == api.ISSUER_KINDS


@pytest.mark.parametrize("value", ["Issuer", "TrustedIssuer,ClusterIssuer", ",", "trustedissuer"])
def test_a_kind_we_do_not_have_is_refused_by_name(value: str) -> None:
    with pytest.raises(ConfigurationError, match="TRUSTED_ISSUER_ISSUER_KINDS must name one or both"):
        Settings.from_env({ENV: value})


def _runtime(kinds: tuple[str, ...], namespaces: frozenset[str] = frozenset()) -> Runtime:
    return Runtime(
        settings=Settings(issuer_kinds=kinds),
        profiles=cast(Any, None),
        pool=cast(Any, None),
        client=cast(Any, None),
        clock=utcnow,
        issuers=IssuerRegistry(),
        namespaces=namespaces,
    )


def test_a_shard_serves_its_namespaces_issuers_and_a_cluster_release_only_cluster_issuers() -> None:
    shard = _runtime((api.ISSUER_KIND,), frozenset({"team-a"}))
    cluster = _runtime((api.CLUSTER_ISSUER_KIND,))
    everything = _runtime(api.ISSUER_KINDS)
    mine = issuer_ref(api.ISSUER_KIND, "team-a", "ca")
    theirs = issuer_ref(api.ISSUER_KIND, "team-b", "ca")
    root = issuer_ref(api.CLUSTER_ISSUER_KIND, None, "root")
    assert [shard.serves(r) for r in (mine, theirs, root)] == [True, False, False]
    assert [cluster.serves(r) for r in (mine, theirs, root)] == [False, False, True]
    assert [everything.serves(r) for r in (mine, theirs, root)] == [True, True, True]
