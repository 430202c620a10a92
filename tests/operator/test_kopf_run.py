"""``kopf run -m issuer.controller`` (README: no election, no probes of ours) runs the same handlers as
``trusted-issuer run``: the issuer handlers are registered from the Settings at start-up, so a release
limited by ``TRUSTED_ISSUER_ISSUER_KINDS`` leaves the other kind alone under kopf's own CLI as well."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from trusted_issuer_sandbox import CERTIFICATE_REQUEST_CRD, SandboxThread

from issuer.tokens import TokenConfig
from tests.csrs import make_csr
from tests.operator.conftest import OUR_CRDS, operator_env, token_profile
from tests.operator.kube import (
    CLUSTER_ISSUER_PATH,
    CR_PATH,
    ISSUER_PATH,
    Kube,
    certificate_request,
    condition,
    issuer_body,
)

SUFFIX = uuid.uuid4().hex[:6]
NAMESPACE = f"kopf-run-{SUFFIX}"
ROOT = f"kopf-root-{SUFFIX}"


@pytest.fixture(scope="module")
def kopf_run(token_config: TokenConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    workdir: Path = tmp_path_factory.mktemp("kopf-run")
    profiles_file = workdir / "profiles.yaml"
    profiles_file.write_text(yaml.safe_dump({"profiles": {"dev": token_profile(token_config)}}))
    with SandboxThread(crds=[CERTIFICATE_REQUEST_CRD, *OUR_CRDS]) as sandbox:
        env = operator_env(
            sandbox.write_kubeconfig(workdir / "kubeconfig"),
            profiles_file,
            TRUSTED_ISSUER_ISSUER_KINDS="TrustedClusterIssuer",
        )
        with (workdir / "kopf.log").open("ab") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kopf",
                    "run",
                    "--standalone",
                    "--all-namespaces",
                    "-m",
                    "issuer.controller",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            yield Kube(str(sandbox.url))
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def test_kopf_run_serves_the_kinds_of_its_settings(kopf_run: Kube) -> None:
    kube = kopf_run
    kube.namespace(NAMESPACE)
    kube.create(ISSUER_PATH.format(ns=NAMESPACE), issuer_body("local", namespace=NAMESPACE))
    kube.create(CLUSTER_ISSUER_PATH, issuer_body(ROOT))
    ready = lambda o: condition(o).get("status") == "True"  # noqa: E731
    kube.wait(f"{CLUSTER_ISSUER_PATH}/{ROOT}", ready, timeout=90)

    body = certificate_request(
        "web", make_csr(dns=["web.example.com"]), issuer=ROOT, kind="TrustedClusterIssuer"
    )
    kube.create(CR_PATH.format(ns=NAMESPACE), body)
    kube.approve(NAMESPACE, "web")
    issued = kube.wait(f"{CR_PATH.format(ns=NAMESPACE)}/web", ready, timeout=90)
    assert issued["status"]["certificate"]

    time.sleep(2)  # the served kind was handled long ago; give a wrong write to the other kind time to land
    assert not kube.get(f"{ISSUER_PATH.format(ns=NAMESPACE)}/local").get("status")
