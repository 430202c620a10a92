"""The Helm chart: lint, render with every HSM backend, validate against Kubernetes' schemas, lock-down,
no PIN anywhere, and a profiles file the operator itself accepts."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from issuer.__main__ import build_parser
from issuer.profiles import load_profiles
from issuer.settings import Settings
from tests.chart.rendering import (
    CHART,
    KUBE_VERSIONS,
    ROOT,
    SCENARIOS,
    Rendered,
    helm_module,
    merged,
    render,
    validate_module,
)

OUR_SIGNERS = ["trustedissuers.trusted-issuer.dev/*", "trustedclusterissuers.trusted-issuer.dev/*"]


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest) -> tuple[str, Rendered]:
    return request.param, render(SCENARIOS[request.param])


def _render_error(values: dict[str, Any]) -> str:
    helm = helm_module()
    with pytest.raises(helm.HelmError) as caught:
        render(values)
    return str(caught.value)


# -- the chart as Helm sees it ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_lint_is_clean(name: str) -> None:
    helm = helm_module()
    report = helm.lint(CHART, SCENARIOS[name], strict=True, kube_version=f"v{KUBE_VERSIONS[0]}")
    assert report["errors"] == []
    # Severity 1 is information (Helm recommends an icon); 2 and above are warnings and errors.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_chart_crds_are_byte_identical_to_the_source_crds() -> None:
    source = sorted((ROOT / "crds").glob("*.yaml"))
    copies = sorted((CHART / "crds").glob("*"))
    assert [p.name for p in copies] == [p.name for p in source]
    for original, copy in zip(source, copies, strict=True):
        assert copy.read_bytes() == original.read_bytes(), (
            f"{copy} differs from {original}: cp crds/*.yaml {copy.parent}/"
        )


def test_helm_sees_both_crds() -> None:
    helm = helm_module()
    with helm.Chart.load(CHART) as chart:
        names = sorted(yaml.safe_load(crd["data"])["metadata"]["name"] for crd in chart.crds)
    assert names == ["trustedclusterissuers.trusted-issuer.dev", "trustedissuers.trusted-issuer.dev"]


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_crds_validate_against_kubernetes_schemas(version: str) -> None:
    validate = validate_module()
    for path in sorted((CHART / "crds").glob("*.yaml")):
        validate.validate(yaml.safe_load(path.read_text()), version, strict=True)


def _check_service_monitor(monitor: dict[str, Any], rendered: Rendered) -> None:
    """kubernetes-validate has no schema for prometheus-operator's CRD: the fields that matter, by hand."""
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = rendered.one("Service")
    labels = service["metadata"]["labels"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items(), "the ServiceMonitor does not select the metrics Service"
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert ports == {"metrics"}
    assert monitor["metadata"]["labels"]["release"] == "prometheus"


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_rendered_object_validates(scenario: tuple[str, Rendered], version: str) -> None:
    validate = validate_module()
    name, rendered = scenario
    assert rendered.objects, f"{name}: nothing rendered"
    for obj, source in zip(rendered.objects, rendered.sources, strict=True):
        if obj["kind"] == "ServiceMonitor":
            _check_service_monitor(obj, rendered)
            continue
        try:
            validate.validate(obj, version, strict=True)
        except validate.ValidationError as err:
            pytest.fail(f"{name}: {source}: {obj['kind']}/{obj['metadata']['name']} against {version}: {err}")


def test_what_each_scenario_renders() -> None:
    kinds = {name: sorted({o["kind"] for o in render(values).objects}) for name, values in SCENARIOS.items()}
    common = [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    assert kinds["softhsm-pvc"] == sorted([*common, "PersistentVolumeClaim"])
    assert kinds["softhsm-emptydir"] == common
    assert kinds["sgx"] == sorted([*common, "PersistentVolumeClaim"])
    assert kinds["tpm"] == sorted([*common, "PersistentVolumeClaim"])
    assert kinds["pkcs11"] == common
    assert kinds["everything-on"] == sorted(
        [*common, "NetworkPolicy", "PersistentVolumeClaim", "ServiceMonitor"]
    )
    for values in SCENARIOS.values():
        assert "Secret" not in {o["kind"] for o in render(values).objects}


# -- the pod ------------------------------------------------------------------------------------------


def test_pod_is_locked_down(scenario: tuple[str, Rendered]) -> None:
    name, rendered = scenario
    deployment = rendered.deployment()
    if name == "tpm":  # one replica on the TPM's node: the old pod stops before the new one opens the store
        assert deployment["spec"]["replicas"] == 1
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    else:
        assert deployment["spec"]["replicas"] == 2
        assert deployment["spec"]["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
        }
    pod = rendered.pod()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tmp"] == {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}
    for container in rendered.containers():
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True, container["name"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, container["name"]
        assert "privileged" not in context
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts["/tmp"] == "tmp", f"{name}: {container['name']} has no writable /tmp"
        assert container["resources"]["limits"]["memory"]
        assert container["resources"]["requests"]["memory"]
    host_paths = [v["name"] for v in pod["volumes"] if "hostPath" in v]
    assert host_paths == (["aesmd-socket"] if name == "sgx" else [])


def test_probes_ask_the_operators_own_probe_server(scenario: tuple[str, Rendered]) -> None:
    _, rendered = scenario
    container = rendered.container()
    assert container["args"][:1] == ["run"] and "--liveness" not in container["args"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"healthz": 8080, "metrics": 9402}
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "healthz"}, probe
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "healthz"}


def test_environment_is_what_the_operator_accepts(scenario: tuple[str, Rendered]) -> None:
    name, rendered = scenario
    variables = rendered.container()["env"]
    env = {e["name"]: e["value"] for e in variables if "value" in e}
    settings = Settings.from_env(env)  # raises ConfigurationError on anything the operator would refuse
    assert settings.profiles_file == Path("/etc/trusted-issuer/profiles.yaml")
    assert settings.workers == (1 if name == "tpm" else 2)
    assert env["TRUSTED_ISSUER_METRICS_PORT"] == "9402"
    assert settings.metrics_bind_address == "0.0.0.0"  # noqa: S104  # a scraper in another pod needs it
    # Where the operator reads TrustedClusterIssuers' Secrets is where rbac.secretAccess grants it.
    assert settings.cluster_resource_namespace == "trusted-issuer"
    assert settings.health_port == 8080
    assert settings.leader_election is True
    assert (settings.lease_name, settings.lease_namespace) == ("trusted-issuer", "trusted-issuer")
    timing = (settings.lease_duration, settings.renew_deadline, settings.retry_period)
    assert [t.total_seconds() for t in timing] == [15, 10, 2]
    run = build_parser().parse_args(["run", "--log-format", env["TRUSTED_ISSUER_LOG_FORMAT"]])
    assert run.log_format == "full"
    assert settings.issuer_kinds == ("TrustedIssuer", "TrustedClusterIssuer")
    pod_name = next(e for e in variables if e["name"] == "POD_NAME")
    assert pod_name["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


# -- PINs ---------------------------------------------------------------------------------------------


def _secret_mounts(rendered: Rendered, container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """mountPath -> the Secret volume mounted there."""
    volumes = {v["name"]: v for v in rendered.pod()["volumes"]}
    return {
        m["mountPath"]: volumes[m["name"]]["secret"]
        for m in container["volumeMounts"]
        if "secret" in volumes[m["name"]]
    }


def test_profiles_file_is_accepted_by_the_operator_and_names_only_pin_files(
    scenario: tuple[str, Rendered], tmp_path: Path
) -> None:
    name, rendered = scenario
    text = rendered.config()["profiles.yaml"]
    path = tmp_path / "profiles.yaml"
    path.write_text(text)
    profiles = load_profiles(path, Settings()).by_name  # the operator's own loader
    raw = yaml.safe_load(text)["profiles"]
    mounts = _secret_mounts(rendered, rendered.container())
    for profile_name, profile in profiles.items():
        assert set(raw[profile_name]) <= {
            "module",
            "tokenLabel",
            "tokenSerial",
            "pinFile",
            "namespaces",
            "clusterIssuers",
            "keyQuota",
        }
        assert profile.token.pin.env is None and profile.token.pin.file is not None
        pin_file = PurePosixPath(str(profile.token.pin.file))
        secret = mounts[str(pin_file.parent)]
        assert secret["items"] == [{"key": secret["items"][0]["key"], "path": pin_file.name}]
        assert secret["defaultMode"] == 0o440
    expected_modules = {
        "softhsm-pvc": "/usr/lib/softhsm/libsofthsm2.so",
        "softhsm-emptydir": "/usr/lib/softhsm/libsofthsm2.so",
        "everything-on": "/usr/lib/softhsm/libsofthsm2.so",
        "sgx": "/usr/local/lib/libp11sgx.so",
        "tpm": "/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so",
        "pkcs11": "/opt/pkcs11/lib/libvendor-pkcs11.so",
    }
    assert {p.token.module for p in profiles.values()} == {expected_modules[name]}


def test_pkcs11_profiles_keep_their_scope() -> None:
    rendered = render(SCENARIOS["pkcs11"])
    raw = yaml.safe_load(rendered.config()["profiles.yaml"])["profiles"]
    assert raw["team-a"] == {
        "module": "/opt/pkcs11/lib/libvendor-pkcs11.so",
        "tokenLabel": "team-a",
        "pinFile": "/var/run/trusted-issuer/pins/team-a/pin",
        "namespaces": ["team-a"],
        "clusterIssuers": False,
    }
    assert raw["default"]["tokenSerial"] == "1234567890"
    assert "namespaces" not in raw["default"]


def test_so_pin_reaches_only_the_token_init_container() -> None:
    rendered = render({})
    init = rendered.pod()["initContainers"][0]
    init_mounts = _secret_mounts(rendered, init)
    assert {tuple(i["path"] for i in s["items"]) for s in init_mounts.values()} == {("so-pin", "user-pin")}
    for secret in _secret_mounts(rendered, rendered.container()).values():
        assert [i["key"] for i in secret["items"]] == ["user-pin"]


def test_no_pin_value_is_templated(scenario: tuple[str, Rendered]) -> None:
    _, rendered = scenario
    for container in rendered.containers():
        for env in container.get("env", []):
            # Only the pod's own name comes from elsewhere (the downward API); no Secret reaches env.
            assert set(env.get("valueFrom", {})) <= {"fieldRef"}, f"{env['name']}: PINs are files, never env"
            if "PIN" in env["name"].upper():
                assert env["name"].endswith("_PIN_FILE") and env["value"].startswith("/"), env
    documents = [*rendered.objects, yaml.safe_load(rendered.config()["profiles.yaml"])]
    for document in documents:
        assert not _pin_keys(document, ""), _pin_keys(document, "")


def _pin_keys(node: Any, path: str) -> list[str]:
    """Paths of mapping keys that would hold a PIN value (pin, soPin, userPin, pinEnv), at any depth."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if str(key).lower() in {"pin", "sopin", "userpin", "pinenv"}:
                found.append(f"{path}.{key}")
            found += _pin_keys(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found += _pin_keys(item, f"{path}[{index}]")
    return found


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"hsm": {"tokenProfiles": {"default": {"pin": "1234"}}}}, "never a PIN"),
        ({"hsm": {"tokenProfiles": {"default": {"pinEnv": "TRUSTED_ISSUER_PIN"}}}}, "unknown field"),
        ({"hsm": {"backend": "pkcs11"}}, "hsm.pkcs11.module is required"),
        ({"hsm": {"backend": "sgx"}}, "set tokenLabel or tokenSerial"),
        (
            {"hsm": {"backend": "sgx", "tokenProfiles": {"default": {"tokenLabel": "x"}}}},
            "pinSecret.name: name the existing Secret",
        ),
        ({"hsm": {"backend": "cloudhsm"}}, "hsm.backend must be softhsm, sgx, tpm or pkcs11"),
        ({"hsm": {"tokenStorage": {"type": "hostPath"}}}, "hsm.tokenStorage.type must be pvc or emptyDir"),
        ({"hsm": {"tokenProfiles": {"Bad_Name": {}}}}, "is not a DNS label"),
        ({"hsm": {"tokenProfiles": {"default": None}}}, "configure at least one token profile"),
        ({"leaderElection": {"enabled": False}}, "replicaCount > 1 needs leaderElection.enabled"),
        ({"replicaCount": 0}, "replicaCount must be at least 1"),
    ],
    ids=[
        "refuses-a-pin-in-values",
        "refuses-a-pin-environment-variable",
        "pkcs11-needs-a-module",
        "sgx-needs-a-token",
        "sgx-needs-a-pin-secret",
        "unknown-backend",
        "unknown-token-storage",
        "profile-name-not-a-dns-label",
        "no-profile-at-all",
        "replicas-need-leader-election",
        "no-replica",
    ],
)
def test_wrong_values_fail_the_render_with_a_reason(values: dict[str, Any], message: str) -> None:
    assert message in _render_error(values)


# -- backends -----------------------------------------------------------------------------------------


def test_softhsm_token_init_container() -> None:
    rendered = render({})
    init = rendered.pod()["initContainers"]
    assert [c["name"] for c in init] == ["init-softhsm-token"]
    assert init[0]["image"] == rendered.container()["image"] == "trusted-issuer:0.1.0"
    env = {e["name"]: e["value"] for e in init[0]["env"]}
    assert env["TOKEN_LABEL"] == "trusted-issuer"
    assert env["SOFTHSM2_CONF"] == "/etc/trusted-issuer/softhsm2.conf"
    conf = rendered.config()["softhsm2.conf"]
    assert "directories.tokendir = /var/lib/trusted-issuer/softhsm/tokens" in conf
    script = (CHART / "files" / "init-softhsm-token.py").read_text()
    assert rendered.config()["init-softhsm-token.py"] == script
    claim = rendered.one("PersistentVolumeClaim")
    assert claim["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    volumes = {v["name"]: v for v in rendered.pod()["volumes"]}
    assert volumes["token"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["metadata"]["name"] == "trusted-issuer-softhsm-token"
    assert "WARNING" not in rendered.notes


def test_softhsm_on_an_emptydir_warns_that_the_ca_key_dies_with_the_pod() -> None:
    rendered = render(SCENARIOS["softhsm-emptydir"])
    volumes = {v["name"]: v for v in rendered.pod()["volumes"]}
    assert volumes["token"]["emptyDir"] == {}
    assert "EVERY CA KEY DIES WITH THE POD" in rendered.notes


def test_existing_claim_is_used_and_none_created() -> None:
    rendered = render({"hsm": {"tokenStorage": {"existingClaim": "my-token"}}})
    assert rendered.of_kind("PersistentVolumeClaim") == []
    volumes = {v["name"]: v for v in rendered.pod()["volumes"]}
    assert volumes["token"]["persistentVolumeClaim"] == {"claimName": "my-token"}


def test_sgx_backend() -> None:
    rendered = render(
        merged(
            SCENARIOS["sgx"],
            {"hsm": {"sgx": {"moduleVolume": {"persistentVolumeClaim": {"claimName": "ctk"}}}}},
        )
    )
    pod, container = rendered.pod(), rendered.container()
    assert "initContainers" not in pod
    assert container["image"] == "registry.example.com/trusted-issuer-sgx:0.1.0-ctk"
    assert container["resources"]["requests"]["sgx.intel.com/epc"] == "512Ki"
    assert container["resources"]["limits"]["sgx.intel.com/epc"] == "512Ki"
    assert container["resources"]["limits"]["memory"] == "512Mi"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["aesmd-socket"]["hostPath"] == {"path": "/var/run/aesmd", "type": "Directory"}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["aesmd-socket"]["mountPath"] == "/var/run/aesmd"
    assert mounts["token"]["mountPath"] == "/opt/intel/cryptoapitoolkit/tokens"
    assert mounts["pkcs11-module"] == {
        "name": "pkcs11-module",
        "mountPath": "/usr/local/lib/trusted-issuer-pkcs11",
        "readOnly": True,
    }
    assert volumes["pkcs11-module"]["persistentVolumeClaim"] == {"claimName": "ctk"}
    # Its own claim: after a move from softhsm, the kept softhsm claim is never mounted for the new token.
    assert volumes["token"]["persistentVolumeClaim"] == {"claimName": "trusted-issuer-sgx-token"}
    assert rendered.one("PersistentVolumeClaim")["metadata"]["name"] == "trusted-issuer-sgx-token"
    assert "SOFTHSM2_CONF" not in {e["name"] for e in container["env"]}
    assert "softhsm2.conf" not in rendered.config()
    assert pod["nodeSelector"] == {"intel.feature.node.kubernetes.io/sgx": "true"}


def test_sgx_extra_resources_are_requested_and_limited_alike() -> None:
    extra = {"sgx.intel.com/enclave": 1, "sgx.intel.com/provision": 1}
    rendered = render(merged(SCENARIOS["sgx"], {"hsm": {"sgx": {"extraResources": extra}}}))
    resources = rendered.container()["resources"]
    for kind in ("requests", "limits"):
        assert {k: resources[kind][k] for k in extra} == extra


def test_pkcs11_backend() -> None:
    rendered = render(SCENARIOS["pkcs11"])
    pod, container = rendered.pod(), rendered.container()
    assert "initContainers" not in pod
    assert rendered.of_kind("PersistentVolumeClaim") == []
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["pkcs11-module"] == "/opt/pkcs11"
    assert "token" not in mounts
    assert {"name": "VENDOR_HSM_CONF", "value": "/opt/pkcs11/etc/client.conf"} in container["env"]
    assert mounts["pin-team-a"] == "/var/run/trusted-issuer/pins/team-a"


# -- RBAC, metrics, disruption ------------------------------------------------------------------------


def test_rbac_has_no_wildcards_and_no_cluster_wide_secret_access(scenario: tuple[str, Rendered]) -> None:
    # Secrets an issuer's spec names (wrapped-key import, intermediate CA certificate) are read with
    # ``get``, through a Role in a namespace rbac.secretAccess lists; never ``list`` or ``watch``, and
    # never through a ClusterRole, which would hand the operator every Secret in the cluster.
    _, rendered = scenario
    for role in rendered.of_kind("ClusterRole") + rendered.of_kind("Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (role["metadata"]["name"], rule)
            if "secrets" in rule["resources"]:
                assert role["kind"] == "Role", f"cluster-wide Secret access: {role['metadata']['name']}"
                assert rule["resources"] == ["secrets"] and rule["verbs"] == ["get"], rule


def _secret_grants(rendered: Rendered) -> dict[str, list[str] | None]:
    """namespace -> the Secret names the operator's ServiceAccount may get there (None: every Secret),
    following each RoleBinding to its Role."""
    account = rendered.one("ServiceAccount")["metadata"]
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in rendered.of_kind("Role")}
    grants: dict[str, list[str] | None] = {}
    for binding in rendered.of_kind("RoleBinding"):
        namespace = binding["metadata"]["namespace"]
        if {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]} not in (
            binding["subjects"]
        ):
            continue
        assert binding["roleRef"]["kind"] == "Role"
        for rule in roles[(namespace, binding["roleRef"]["name"])]["rules"]:
            if "secrets" in rule["resources"]:
                assert namespace not in grants, f"two Secret grants in {namespace}"
                grants[namespace] = rule.get("resourceNames")
    return grants


def test_secret_access_is_opt_in_and_per_namespace() -> None:
    assert _secret_grants(render({})) == {}
    rendered = render(SCENARIOS["everything-on"])
    assert _secret_grants(rendered) == {
        "team-a": None,  # every Secret of team-a: RBAC cannot select by label
        "team-b": ["sub-ca"],
        "trusted-issuer": None,  # the cluster resource namespace, for TrustedClusterIssuers
    }
    elsewhere = render(
        {
            "operator": {"clusterResourceNamespace": "ca-secrets"},
            "rbac": {"secretAccess": {"clusterIssuers": True, "clusterIssuerSecretNames": ["root-import"]}},
        }
    )
    assert _secret_grants(elsewhere) == {"ca-secrets": ["root-import"]}
    env = {e["name"]: e.get("value") for e in elsewhere.container()["env"]}
    assert env["TRUSTED_ISSUER_CLUSTER_RESOURCE_NAMESPACE"] == "ca-secrets"
    assert _secret_grants(render({"rbac": {"create": False, "secretAccess": {"namespaces": ["a"]}}})) == {}


def test_release_notes_say_where_the_operator_may_read_secrets() -> None:
    assert "The operator may read no Secret" in render({}).notes
    notes = render(SCENARIOS["everything-on"]).notes
    assert "only in: team-a, team-b, trusted-issuer" in notes
    assert "may read no Secret" not in notes and "nothing can scrape" not in notes
    closed = render({"metrics": {"networkPolicy": {"enabled": True}}}).notes
    assert "nothing can scrape /metrics" in closed


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"namespaces": [{"name": "team-a"}]}, 'unknown field "name"'),
        ({"namespaces": [["team-a"]]}, "an entry is a namespace name or {namespace, secretNames}"),
        ({"namespaces": ["Team_A"]}, "is not a namespace name"),
        ({"namespaces": ["trusted-issuer"], "clusterIssuers": True}, "granted twice"),
    ],
    ids=["unknown-field", "not-a-name-or-mapping", "not-a-namespace-name", "same-namespace-twice"],
)
def test_wrong_secret_access_fails_the_render(values: dict[str, Any], message: str) -> None:
    assert message in _render_error({"rbac": {"secretAccess": values}})


#: The user-facing ClusterRoles Kubernetes aggregates into; cluster-reader is OpenShift's, as in cert-manager.
AGGREGATES = ("view", "edit", "admin", "cluster-reader")


def _aggregated(rendered: Rendered) -> dict[str, set[tuple[str, str, str]]]:
    """What each user-facing role gains from the chart, as the API server's aggregation controller
    computes it: the union of the rules of every ClusterRole labelled aggregate-to-<role>."""
    gained: dict[str, set[tuple[str, str, str]]] = {name: set() for name in AGGREGATES}
    for role in rendered.of_kind("ClusterRole"):
        labels = role["metadata"].get("labels", {})
        for name in AGGREGATES:
            if labels.get(f"rbac.authorization.k8s.io/aggregate-to-{name}") == "true":
                gained[name] |= {
                    (group, resource, verb)
                    for rule in role["rules"]
                    for group in rule["apiGroups"]
                    for resource in rule["resources"]
                    for verb in rule["verbs"]
                }
    return gained


def test_aggregated_cluster_roles_give_tenants_their_issuers_but_never_status() -> None:
    rendered = render({})
    read = {("trusted-issuer.dev", "trustedissuers", v) for v in ("get", "list", "watch")}
    write = {
        ("trusted-issuer.dev", "trustedissuers", v)
        for v in ("create", "update", "patch", "delete", "deletecollection")
    }
    assert _aggregated(rendered) == {
        "view": read,
        "edit": read | write,
        "admin": read | write,
        "cluster-reader": {
            ("trusted-issuer.dev", "trustedclusterissuers", v) for v in ("get", "list", "watch")
        },
    }
    for rules in _aggregated(rendered).values():
        assert not [r for r in rules if "/" in r[1]], "a tenant could write status, the operator's cache"
    # Aggregated roles are bound by whoever binds admin, edit or view: the chart binds none of them.
    aggregated = {
        r["metadata"]["name"]
        for r in rendered.of_kind("ClusterRole")
        if any(k.startswith("rbac.authorization.k8s.io/aggregate-to-") for k in r["metadata"]["labels"])
    }
    assert aggregated == {"trusted-issuer-view", "trusted-issuer-edit", "trusted-issuer-cluster-view"}
    bound = {
        b["roleRef"]["name"] for b in rendered.of_kind("ClusterRoleBinding") + rendered.of_kind("RoleBinding")
    }
    assert not aggregated & bound
    off = render({"rbac": {"aggregateClusterRoles": False}})
    assert _aggregated(off) == {name: set() for name in AGGREGATES}


def test_cert_manager_approver_role_is_optional_and_bound_to_cert_manager() -> None:
    rendered = render({})
    approver = rendered.one("ClusterRole", "trusted-issuer-cert-manager-approver")
    assert approver["rules"] == [
        {
            "apiGroups": ["cert-manager.io"],
            "resources": ["signers"],
            "verbs": ["approve"],
            "resourceNames": OUR_SIGNERS,
        }
    ]
    binding = rendered.one("ClusterRoleBinding", "trusted-issuer-cert-manager-approver")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "cert-manager", "namespace": "cert-manager"}
    ]
    off = render({"rbac": {"certManagerApprover": {"enabled": False}}})
    assert "trusted-issuer-cert-manager-approver" not in {
        r["metadata"]["name"] for r in off.of_kind("ClusterRole")
    }
    assert "trusted-issuer-cert-manager-approver" not in {
        b["metadata"]["name"] for b in off.of_kind("ClusterRoleBinding")
    }


def test_metrics_service_selects_the_pod() -> None:
    rendered = render({})
    service = rendered.one("Service")
    labels = rendered.deployment()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9402, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert rendered.of_kind("ServiceMonitor") == []


def _admits(policy: dict[str, Any], source: dict[str, Any] | None, port: int, rendered: Rendered) -> bool:
    """NetworkPolicy ingress semantics, for a policy that selects the pod: does one rule admit traffic
    from ``source`` ({namespace, labels}; None for the node, which no peer selector matches) to the
    container ``port``? Named ports resolve through the pod's container ports."""
    named = {p["name"]: p["containerPort"] for p in rendered.container()["ports"]}
    for rule in policy["spec"].get("ingress", []):
        ports = [named.get(p["port"], p["port"]) for p in rule.get("ports", [])]
        if ports and port not in ports:
            continue
        peers = rule.get("from")
        if not peers:
            return True  # no ``from``: every source, the node included
        for peer in peers:
            assert set(peer) <= {"namespaceSelector", "podSelector"}, peer
            if source is None:
                continue
            namespace_labels = {"kubernetes.io/metadata.name": source["namespace"]}
            want_namespace = peer.get("namespaceSelector", {}).get("matchLabels")
            want_pod = peer.get("podSelector", {}).get("matchLabels") or {}
            in_namespace = (
                want_namespace.items() <= namespace_labels.items()
                if "namespaceSelector" in peer
                else source["namespace"] == policy["metadata"]["namespace"]
            )
            if in_namespace and want_pod.items() <= source["labels"].items():
                return True
    return False


def test_network_policy_lets_only_the_named_scrapers_reach_metrics_and_every_prober_the_probes() -> None:
    rendered = render(SCENARIOS["everything-on"])
    policy = rendered.one("NetworkPolicy")
    pod_labels = rendered.deployment()["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # the API server and a network HSM stay reachable
    prometheus = {"namespace": "monitoring", "labels": {"app.kubernetes.io/name": "prometheus"}}
    grafana = {"namespace": "monitoring", "labels": {"app.kubernetes.io/name": "grafana"}}
    tenant = {"namespace": "team-a", "labels": {"app.kubernetes.io/name": "prometheus"}}
    anything_in_observability = {"namespace": "observability", "labels": {"app": "agent"}}
    metrics, health = 9402, 8080
    assert _admits(policy, prometheus, metrics, rendered)
    assert _admits(policy, anything_in_observability, metrics, rendered)
    assert not _admits(policy, grafana, metrics, rendered)
    assert not _admits(policy, tenant, metrics, rendered)
    assert not _admits(policy, None, metrics, rendered)
    # The kubelet probes from the node: the probe port admits every source; no other port is open.
    container = rendered.container()
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "healthz"
    for source in (None, tenant, prometheus):
        assert _admits(policy, source, health, rendered)
        assert not _admits(policy, source, 9999, rendered)


def test_network_policy_without_scrapers_closes_metrics_and_is_off_by_default() -> None:
    assert render({}).of_kind("NetworkPolicy") == []
    rendered = render({"metrics": {"networkPolicy": {"enabled": True}}})
    policy = rendered.one("NetworkPolicy")
    prometheus = {"namespace": "monitoring", "labels": {"app.kubernetes.io/name": "prometheus"}}
    assert not _admits(policy, prometheus, 9402, rendered)
    assert _admits(policy, None, 8080, rendered)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"health": {"port": 9402}}, "health.port and metrics.port to differ"),
        ({"metrics": {"networkPolicy": {"scrapers": ["monitoring"]}}}, "each entry is {namespace"),
        ({"metrics": {"networkPolicy": {"scrapers": [{"podLabels": {"a": "b"}}]}}}, "needs a namespace"),
        (
            {"metrics": {"networkPolicy": {"scrapers": [{"namespace": "m", "ipBlock": "0.0.0.0/0"}]}}},
            'unknown field "ipBlock"',
        ),
    ],
    ids=[
        "probe-and-metrics-on-one-port",
        "scraper-not-a-mapping",
        "scraper-without-namespace",
        "unknown-field",
    ],
)
def test_wrong_network_policy_values_fail_the_render(values: dict[str, Any], message: str) -> None:
    assert message in _render_error(merged({"metrics": {"networkPolicy": {"enabled": True}}}, values))


def test_metrics_bind_address_reaches_the_operator() -> None:
    rendered = render({"metrics": {"bindAddress": "127.0.0.1"}})
    env = {e["name"]: e["value"] for e in rendered.container()["env"] if "value" in e}
    assert Settings.from_env(env).metrics_bind_address == "127.0.0.1"


def test_replicas_are_placed_by_where_the_token_lives() -> None:
    def affinity(values: dict[str, Any]) -> dict[str, Any]:
        return dict(render(values).pod().get("affinity") or {})

    # softhsm and sgx tokens are files on one node: the replicas run there, with the token.
    for name in ("softhsm-pvc", "sgx"):
        term = affinity(SCENARIOS[name])["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term[0]["topologyKey"] == "kubernetes.io/hostname", name
    # A network HSM reaches every node: spread them, so losing a node leaves a standby.
    spread = affinity(SCENARIOS["pkcs11"])["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert spread[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    # One replica needs no placement, and updates by Recreate; a user's affinity wins.
    assert "not the loss of the node" in render({}).notes
    assert "not the loss of the node" not in render(SCENARIOS["pkcs11"]).notes
    single = render({"replicaCount": 1})
    assert "warm standbys" not in single.notes
    assert "affinity" not in single.pod()
    assert single.deployment()["spec"]["strategy"] == {"type": "Recreate"}
    own = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}
    assert affinity({"affinity": own}) == own


def test_a_shard_watches_its_namespaces_under_its_own_lease() -> None:
    shard = render(
        {"operator": {"watchNamespaces": ["team-a", "team-b"]}, "fullnameOverride": "issuer-shard-a"}
    )
    container = shard.container()
    assert container["args"] == ["run", "--namespace", "team-a", "--namespace", "team-b"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TRUSTED_ISSUER_LEASE_NAME"] == "issuer-shard-a"


def test_cluster_issuers_can_be_left_to_another_release() -> None:
    shard = render({"operator": {"watchNamespaces": ["team-a"], "issuerKinds": ["TrustedIssuer"]}})
    cluster = render({"operator": {"issuerKinds": ["TrustedClusterIssuer"]}, "fullnameOverride": "cluster"})
    for rendered, kinds in ((shard, ("TrustedIssuer",)), (cluster, ("TrustedClusterIssuer",))):
        env = {e["name"]: e["value"] for e in rendered.container()["env"] if "value" in e}
        assert Settings.from_env(env).issuer_kinds == kinds


def test_lease_rights_are_a_role_in_the_release_namespace_only() -> None:
    rendered = render({})
    role = rendered.one("Role", "trusted-issuer-leader-election")
    assert role["metadata"]["namespace"] == "trusted-issuer"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    ]
    binding = rendered.one("RoleBinding", "trusted-issuer-leader-election")
    assert binding["metadata"]["namespace"] == "trusted-issuer"
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    for cluster_role in rendered.of_kind("ClusterRole"):
        assert all("leases" not in rule["resources"] for rule in cluster_role["rules"])
    single = render({"replicaCount": 1, "leaderElection": {"enabled": False}})
    assert single.of_kind("Role") == []
    env = {e["name"]: e.get("value") for e in single.container()["env"]}
    assert env["TRUSTED_ISSUER_LEADER_ELECTION"] == "false"


def test_pod_disruption_budget() -> None:
    assert render({}).one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    everything = render(SCENARIOS["everything-on"]).one("PodDisruptionBudget")["spec"]
    assert everything["minAvailable"] == 1 and "maxUnavailable" not in everything
    assert render({"podDisruptionBudget": {"enabled": False}}).of_kind("PodDisruptionBudget") == []


# -- values.yaml --------------------------------------------------------------------------------------


def test_every_values_key_is_commented() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    uncommented = []
    for number, line in enumerate(lines):
        if not re.match(r"^\s*[A-Za-z0-9_.-]+:", line):
            continue
        above = lines[number - 1].strip() if number else ""
        if not above.startswith("#") and "#" not in line:
            uncommented.append(f"values.yaml:{number + 1}: {line.strip()}")
    assert uncommented == []


def test_values_name_every_secret_never_a_pin() -> None:
    assert _pin_keys(yaml.safe_load((CHART / "values.yaml").read_text()), "") == []


def test_the_default_profile_carries_a_key_quota_the_operator_reads() -> None:
    """Hardware tokens and the softhsm volume hold few keys: the chart's default profile splits them."""
    rendered = render({})
    quota = yaml.safe_load(rendered.config()["profiles.yaml"])["profiles"]["default"]["keyQuota"]
    assert quota == {"perNamespace": 16, "clusterIssuers": 32}
    unbounded = render({"hsm": {"tokenProfiles": {"default": {"keyQuota": None}}}})
    assert "keyQuota" not in yaml.safe_load(unbounded.config()["profiles.yaml"])["profiles"]["default"]
