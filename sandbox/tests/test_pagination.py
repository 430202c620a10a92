"""Chunked lists (``limit`` and ``continue``), as kube-apiserver serves them: clients that page, such as
the operator's reflectors and ``kubectl get --chunk-size``, get bounded pages that join up to the whole
list, with the first page's resourceVersion to watch from."""

from __future__ import annotations

import pytest
from sandbox_clients import CR_PATH, CertificateRequestFactory, HttpApi
from trusted_issuer_sandbox import Sandbox

pytestmark = pytest.mark.asyncio

CRS = CR_PATH.format(namespace="default")


async def _fill(api: HttpApi, certificate_request: CertificateRequestFactory, count: int) -> list[str]:
    names = [f"cr-{i:03d}" for i in range(count)]
    for name in names:
        assert (await api.post(CRS, certificate_request(name))).status == 201
    return names


async def test_pages_join_up_to_the_whole_list_in_order(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    names = await _fill(api, certificate_request, 7)
    whole = (await api.get(CRS)).body
    assert "continue" not in whole["metadata"] and len(whole["items"]) == 7

    seen, pages, token = [], [], ""
    while True:
        reply = await api.get(f"{CRS}?limit=3" + (f"&continue={token}" if token else ""))
        assert reply.status == 200
        page = reply.body
        assert len(page["items"]) <= 3
        pages.append(page["metadata"])
        seen += [item["metadata"]["name"] for item in page["items"]]
        token = page["metadata"].get("continue", "")
        if not token:
            break
    assert seen == names
    assert [m.get("remainingItemCount") for m in pages] == [4, 1, None]
    # Every page carries the first page's version: the one to watch from.
    assert {m["resourceVersion"] for m in pages} == {whole["metadata"]["resourceVersion"]}


async def test_changes_between_pages_reach_a_client_that_watches_from_the_listing(
    api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    await _fill(api, certificate_request, 4)
    first = (await api.get(f"{CRS}?limit=2")).body
    version = first["metadata"]["resourceVersion"]
    await api.delete(f"{CRS}/cr-003")
    await api.post(CRS, certificate_request("cr-000a"))  # sorts before the pages still to come
    rest = (await api.get(f"{CRS}?limit=2&continue={first['metadata']['continue']}")).body
    listed = {item["metadata"]["name"] for item in first["items"] + rest["items"]}
    assert listed == {"cr-000", "cr-001", "cr-002"}
    events = await api.watch(CRS, resourceVersion=version, timeoutSeconds="1")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("DELETED", "cr-003"),
        ("ADDED", "cr-000a"),
    ]


async def test_a_continue_token_from_before_compaction_is_gone(
    sandbox: Sandbox, api: HttpApi, certificate_request: CertificateRequestFactory
) -> None:
    await _fill(api, certificate_request, 3)
    token = (await api.get(f"{CRS}?limit=1")).body["metadata"]["continue"]
    await api.post(CRS, certificate_request("later"))
    sandbox.store.compact()
    reply = await api.get(f"{CRS}?limit=1&continue={token}")
    assert reply.status == 410 and reply.body["reason"] == "Expired"


@pytest.mark.parametrize("query", ["limit=0", "limit=x", "limit=2&continue=bm90LWpzb24"])
async def test_a_bad_limit_or_token_is_a_400_that_says_so(api: HttpApi, query: str) -> None:
    reply = await api.get(f"{CRS}?{query}")
    assert reply.status == 400 and "invalid limit or continue parameter" in reply.body["message"]
