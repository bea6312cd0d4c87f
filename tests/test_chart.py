"""The Helm chart charts/oracle, rendered, linted and schema-checked by the real Helm engine.

Helm runs in-process through helm_python (Helm's Go SDK); every rendered object is validated
against the Kubernetes OpenAPI schemas of kubernetes_validate. That validator checks shapes, not
enum values, so the fields whose values matter are asserted here.
"""

from __future__ import annotations

import base64
import copy
import json
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

import sidecar

CHART = Path(__file__).resolve().parent.parent / "charts" / "oracle"
SCENARIOS = sorted(p.name.removesuffix("-values.yaml") for p in CHART.glob("ci/*-values.yaml"))
RELEASE = "rel"
NAMESPACE = "oracle-ns"
KUBE_VERSIONS = ("1.28", "1.29", kubernetes_validate.utils.major_minor(
    kubernetes_validate.latest_version()))
# Every scenario, with the sidecar forced native and forced plain.
CASES = [(scenario, native) for scenario in SCENARIOS for native in (True, False)]
CASE_IDS = [f"{scenario}-{'native' if native else 'plain'}" for scenario, native in CASES]

# Kinds outside Kubernetes itself, which kubernetes_validate has no schema for; each is checked
# field by field in its own test below.
OPERATOR_KINDS = {("monitoring.coreos.com/v1", "PodMonitor"),
                  ("monitoring.coreos.com/v1", "PrometheusRule")}

# The yamllint rules for the chart: the defaults, except that Helm files open without "---",
# Helm's toYaml writes block sequences flush with their key, and 100 columns as in the code.
YAMLLINT = YamlLintConfig("""
extends: default
rules:
  document-start: disable
  indentation: {spaces: 2, indent-sequences: whatever}
  line-length: {max: 120}
""")

TOKEN = "123456:test-token-not-real"
CHAT_ID = "-1001234567890"


# -- rendering ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rendered:
    """One rendering of the chart: the objects, the raw text per template, and NOTES.txt."""

    docs: list[dict[str, Any]]
    text: dict[str, str]
    notes: str

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        """Every object of ``kind``."""
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        """The one object of ``kind`` named ``name``."""
        found = [d for d in self.kinds(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: found {len(found)}"
        return found[0]

    def component(self, component: str) -> list[dict[str, Any]]:
        """Every object labelled with app.kubernetes.io/component ``component``."""
        return [d for d in self.docs
                if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component]

    def manifest(self) -> str:
        """All manifests as one YAML stream, as `helm template` prints them (each one trimmed)."""
        return "".join(f"---\n# Source: {path}\n{text.strip()}\n"
                       for path, text in sorted(self.text.items())
                       if text.strip() and not path.endswith("NOTES.txt"))


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in, maps key by key, as Helm merges values files."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def scenario_values(scenario: str) -> dict[str, Any]:
    """The values of ci/SCENARIO-values.yaml, parsed by Helm."""
    values: dict[str, Any] = helm.values_from_yaml(
        (CHART / "ci" / f"{scenario}-values.yaml").read_text())
    return values


def render(chart: helm.Chart, values: dict[str, Any], release: str = RELEASE) -> Rendered:
    """Render the chart offline with ``values`` and parse every manifest."""
    text = chart.render(values, name=release, namespace=NAMESPACE, is_install=True)
    docs = [doc for path, body in sorted(text.items()) if not path.endswith("NOTES.txt")
            for doc in yaml.safe_load_all(body) if doc]
    notes = next((body for path, body in text.items() if path.endswith("NOTES.txt")), "")
    return Rendered(docs, text, notes)


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    """The chart, loaded once for the module."""
    with helm.Chart.load(CHART) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def rendered(chart: helm.Chart) -> dict[tuple[str, bool], Rendered]:
    """Every scenario rendered once with the sidecar forced native and once forced plain."""
    return {(scenario, native): render(chart, merge(scenario_values(scenario),
                                                    {"sidecar": {"native": native}}))
            for scenario, native in CASES}


@pytest.fixture(scope="module")
def default(rendered: dict[tuple[str, bool], Rendered]) -> Rendered:
    """The default scenario with the sidecar forced native."""
    return rendered["default", True]


@pytest.fixture(scope="module")
def full(rendered: dict[tuple[str, bool], Rendered]) -> Rendered:
    """The scenario with every optional object on, sidecar forced native."""
    return rendered["full", True]


# -- helpers over rendered objects -------------------------------------------------------------

FULLNAME = f"{RELEASE}-oracle"


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    """The pod spec inside a Deployment, CronJob or Pod."""
    if doc["kind"] == "Pod":
        return doc["spec"]  # type: ignore[no-any-return]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    return doc["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def workloads(r: Rendered) -> list[dict[str, Any]]:
    """Every object that runs pods."""
    return [d for d in r.docs if d["kind"] in ("Deployment", "CronJob", "Pod")]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every container of a pod spec, init containers included."""
    return [*spec.get("initContainers", []), *spec["containers"]]


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    """The one container called ``name`` in a pod spec, init containers included."""
    found = [c for c in containers(spec) if c["name"] == name]
    assert len(found) == 1, f"container {name}: found {len(found)}"
    return found[0]


def environment(r: Rendered, c: dict[str, Any]) -> dict[str, Any]:
    """A container's environment: its ConfigMap envFrom entries, then its env (values or refs)."""
    env: dict[str, Any] = {}
    for source in c.get("envFrom", []):
        env.update(r.get("ConfigMap", source["configMapRef"]["name"])["data"])
    for var in c.get("env", []):
        env[var["name"]] = var.get("value", var.get("valueFrom"))
    return env


def oracle_pod(r: Rendered) -> dict[str, Any]:
    """The Oracle Deployment's pod spec."""
    return pod_spec(r.get("Deployment", FULLNAME))


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, value) pair in a parsed document, depth first."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")


# -- lint and validation -----------------------------------------------------------------------

@pytest.mark.parametrize("kube_version", ["v1.28.0", f"v{KUBE_VERSIONS[-1]}.0"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_strict_is_clean(scenario: str, kube_version: str) -> None:
    """helm lint --strict finds nothing at warning level or above in any ci scenario."""
    report = helm.lint(CHART, scenario_values(scenario), strict=True, kube_version=kube_version,
                       namespace=NAMESPACE)
    findings = [m for m in report["messages"] if m["severity"] >= 2]
    assert (findings, report["errors"]) == ([], [])


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_object_validates_against_kubernetes(rendered, case) -> None:
    """Every rendered object is valid for Kubernetes 1.28, 1.29 and the newest known version."""
    r = rendered[case]
    assert r.docs
    for doc in r.docs:
        if (doc["apiVersion"], doc["kind"]) in OPERATOR_KINDS:
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                where = ".".join(str(p) for p in err.path)
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on {version}: "
                            f"{where}: {err.message}")
            except kubernetes_validate.SchemaNotFoundError as err:
                pytest.fail(err.message)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_enum_fields_hold_allowed_values(rendered, case) -> None:
    """Fields whose values the schema validator does not check hold values Kubernetes accepts."""
    allowed = {
        "imagePullPolicy": {"Always", "IfNotPresent", "Never"},
        "protocol": {"TCP", "UDP", "SCTP"},
        "concurrencyPolicy": {"Allow", "Forbid", "Replace"},
    }
    r = rendered[case]
    for doc in r.docs:
        for path, value in walk(doc):
            key = path.rsplit(".", 1)[-1]
            if key in allowed:
                assert value in allowed[key], f"{doc['kind']}{path}={value!r}"
        if doc["kind"] == "Service":
            assert doc["spec"]["type"] in {"ClusterIP", "NodePort", "LoadBalancer"}
        if doc["kind"] == "Secret":
            assert doc["type"] == "Opaque"
    for doc in workloads(r):
        spec = pod_spec(doc)
        allowed_restart = {"Never", "OnFailure"} if doc["kind"] == "CronJob" else (
            {"Never"} if doc["kind"] == "Pod" else {"Always"})
        assert spec.get("restartPolicy", "Always") in allowed_restart
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in spec.get("initContainers", []):
            assert c.get("restartPolicy", "Always") == "Always"
        for c in spec["containers"]:
            assert "restartPolicy" not in c, "only init containers may have a restartPolicy"


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_rendered_output_passes_yamllint(rendered, case) -> None:
    """The rendered manifests pass yamllint."""
    problems = list(linter.run(rendered[case].manifest(), YAMLLINT))
    assert [str(p) for p in problems] == []


@pytest.mark.parametrize("name", ["values.yaml", "Chart.yaml", *(
    f"ci/{s}-values.yaml" for s in SCENARIOS)])
def test_chart_files_pass_yamllint(name: str) -> None:
    """values.yaml, Chart.yaml and the ci scenarios pass yamllint."""
    problems = list(linter.run((CHART / name).read_text(), YAMLLINT))
    assert [str(p) for p in problems] == []


def test_long_release_names_fit(chart) -> None:
    """With the longest release name every object name fits Kubernetes' limits and validates."""
    release = "r" * 53
    r = render(chart, scenario_values("full"), release=release)
    for doc in r.docs:
        name = doc["metadata"]["name"]
        assert len(name) <= (52 if doc["kind"] == "CronJob" else 63), name
        if (doc["apiVersion"], doc["kind"]) not in OPERATOR_KINDS:
            kubernetes_validate.validate(doc, KUBE_VERSIONS[-1], strict=True)


# -- the Oracle pod and its sidecar ------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_sidecar_is_native_or_plain_as_forced(rendered, case) -> None:
    """sidecar.native true makes an init container with restartPolicy Always; false a container."""
    _, native = case
    spec = oracle_pod(rendered[case])
    init = [c["name"] for c in spec.get("initContainers", [])]
    main = [c["name"] for c in spec["containers"]]
    if native:
        assert (init, main) == (["sidecar"], ["oracle"])
        assert spec["initContainers"][0]["restartPolicy"] == "Always"
    else:
        assert (init, main) == ([], ["oracle", "sidecar"])


def test_auto_chooses_native_on_the_newest_kubernetes(chart) -> None:
    """sidecar.native auto gives a native sidecar on the Kubernetes version Helm renders for."""
    spec = oracle_pod(render(chart, {}))
    assert [c["name"] for c in spec["initContainers"]] == ["sidecar"]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_oracle_and_sidecar_share_the_socket_directory(rendered, case) -> None:
    """Both containers mount one emptyDir where ORACLE_METRICS_SOCKET points, for both of them."""
    r = rendered[case]
    spec = oracle_pod(r)
    mounts = {}
    for name in ("oracle", "sidecar"):
        c = container(spec, name)
        socket_path = environment(r, c)["ORACLE_METRICS_SOCKET"]
        directory = posixpath.dirname(socket_path)
        (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == directory]
        mounts[name] = (mount["name"], mount["mountPath"], socket_path)
    assert mounts["oracle"] == mounts["sidecar"]
    volume = next(v for v in spec["volumes"] if v["name"] == mounts["oracle"][0])
    assert "emptyDir" in volume


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_sidecar_probes_hit_the_right_paths_and_port(rendered, case) -> None:
    """Startup and liveness probe /livez, readiness probes /ready, all on the port named metrics."""
    r = rendered[case]
    sidecar_container = container(oracle_pod(r), "sidecar")
    (port,) = sidecar_container["ports"]
    assert port == {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}
    assert environment(r, sidecar_container)["ORACLE_HTTP_PORT"] == "9090"
    paths = {probe: sidecar_container[probe]["httpGet"]
             for probe in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert paths == {"startupProbe": {"path": "/livez", "port": "metrics"},
                     "livenessProbe": {"path": "/livez", "port": "metrics"},
                     "readinessProbe": {"path": "/ready", "port": "metrics"}}
    assert sidecar_container["args"] == ["serve"]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_oracle_pods_carry_the_scrape_annotations(rendered, case) -> None:
    """The Oracle pod template has prometheus.io/scrape, port and path for the sidecar."""
    annotations = rendered[case].get("Deployment", FULLNAME)["spec"]["template"]["metadata"][
        "annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9090"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_service_exposes_grpc_and_metrics(default) -> None:
    """The Service sends gRPC to the Oracle and the metrics port to the sidecar's port number."""
    service = default.get("Service", FULLNAME)
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {"grpc": (50052, "grpc"), "metrics": (9090, 9090)}
    pod_labels = default.get("Deployment", FULLNAME)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_sidecar_settings_reach_its_environment(chart) -> None:
    """Each sidecar value arrives as the environment variable `oracle-sidecar serve` reads."""
    r = render(chart, {"sidecar": {"staleAfter": 7, "expireAfter": 90, "maxSeries": 50,
                                   "grpcHealthTarget": "127.0.0.1:50052", "logLevel": "DEBUG",
                                   "port": 9191, "host": "::"}})
    env = environment(r, container(oracle_pod(r), "sidecar"))
    assert env == {
        "ORACLE_METRICS_SOCKET": "/var/run/oracle-sidecar/metrics.sock",
        "ORACLE_HTTP_HOST": "::",
        "ORACLE_HTTP_PORT": "9191",
        "ORACLE_STALE_AFTER": "7",
        "ORACLE_EXPIRE_AFTER": "90",
        "ORACLE_MAX_SERIES": "50",
        "ORACLE_GRPC_HEALTH_TARGET": "127.0.0.1:50052",
        "LOG_LEVEL": "DEBUG",
    }


def test_sidecar_config_change_rolls_the_oracle_pods(chart, default) -> None:
    """The checksum annotation changes with the sidecar's settings and not with others'."""
    def checksum(r: Rendered) -> str:
        metadata = r.get("Deployment", FULLNAME)["spec"]["template"]["metadata"]
        return str(metadata["annotations"]["checksum/sidecar-config"])

    base = {"sidecar": {"native": True}}
    changed = render(chart, merge(base, {"sidecar": {"staleAfter": 9}}))
    unrelated = render(chart, merge(base, {"dashboard": {"refresh": 9}}))
    assert checksum(changed) != checksum(default)
    assert checksum(unrelated) == checksum(default)


def test_demo_oracle_by_default(default) -> None:
    """Without an Oracle image the Oracle container runs the demo Oracle on oracle.grpcPort."""
    oracle = container(oracle_pod(default), "oracle")
    assert oracle["image"] == f"oracle-sidecar:{sidecar.__version__}"
    assert oracle["args"] == ["demo-oracle"]
    assert environment(default, oracle)["ORACLE_PORT"] == "50052"
    assert oracle["ports"] == [{"name": "grpc", "containerPort": 50052, "protocol": "TCP"}]
    assert "livenessProbe" not in oracle


def test_user_oracle_image_with_grpc_probes(full) -> None:
    """A user's Oracle image runs with its own args, env and native gRPC probes on its port."""
    oracle = container(oracle_pod(full), "oracle")
    assert oracle["image"] == "registry.example.com/nps/oracle:2.4.1"
    assert oracle["imagePullPolicy"] == "Always"
    assert oracle["args"] == ["--port=50052"]
    env = environment(full, oracle)
    assert "ORACLE_PORT" not in env
    assert env["ORACLE_LOG_DIR"] == "/tmp/logs"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert oracle[probe]["grpc"] == {"port": 50052, "service": ""}


def test_user_oracle_image_needs_a_tag(chart) -> None:
    """Setting oracle.image.repository without a tag fails with a message that says so."""
    with pytest.raises(helm.HelmRenderError, match=r"oracle\.image\.tag is required"):
        chart.render({"oracle": {"image": {"repository": "example/oracle"}}},
                     name=RELEASE, namespace=NAMESPACE)


# -- security ----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_pod_runs_locked_down(rendered, case) -> None:
    """Non-root numeric ids, read-only root, no escalation, no capabilities, RuntimeDefault."""
    for doc in workloads(rendered[case]):
        spec = pod_spec(doc)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert pod["runAsUser"] == 10001 and pod["runAsGroup"] == 10001
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in containers(spec):
            context = c["securityContext"]
            where = f"{doc['kind']}/{doc['metadata']['name']}/{c['name']}"
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert isinstance(context["runAsUser"], int) and context["runAsUser"] > 0, where
            assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"], where


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_only_api_callers_get_a_token(rendered, case) -> None:
    """Only the dashboard and the alerter mount a service-account token, each its own account."""
    r = rendered[case]
    for doc in workloads(r):
        component = doc["metadata"]["labels"]["app.kubernetes.io/component"]
        spec = pod_spec(doc)
        calls_api = component in ("dashboard", "alerter")
        assert spec["automountServiceAccountToken"] is calls_api, component
        if calls_api:
            account = r.get("ServiceAccount", spec["serviceAccountName"])
            assert account["automountServiceAccountToken"] is False
        else:
            assert "serviceAccountName" not in spec


# -- RBAC --------------------------------------------------------------------------------------

def rules(role: dict[str, Any]) -> list[tuple[str, tuple[str, ...], tuple[str, ...], Any]]:
    """A Role's rules as comparable tuples: (resource, verbs, resourceNames, apiGroups)."""
    return [(rule["resources"][0], tuple(rule["verbs"]), tuple(rule.get("resourceNames", ())),
             tuple(rule["apiGroups"])) for rule in role["rules"]]


def test_role_verbs_are_exactly_the_listed_ones(default) -> None:
    """Dashboard: get/list pods, get the state ConfigMap; alerter: also update/patch it."""
    state = f"{FULLNAME}-alerter-state"
    assert rules(default.get("Role", f"{FULLNAME}-dashboard")) == [
        ("pods", ("get", "list"), (), ("",)),
        ("configmaps", ("get",), (state,), ("",)),
    ]
    assert rules(default.get("Role", f"{FULLNAME}-alerter")) == [
        ("pods", ("get", "list"), (), ("",)),
        ("configmaps", ("get", "update", "patch"), (state,), ("",)),
    ]
    assert len(default.kinds("Role")) == 2
    assert default.kinds("ClusterRole") == [] and default.kinds("ClusterRoleBinding") == []
    default.get("ConfigMap", state)


@pytest.mark.parametrize("component", ["dashboard", "alerter"])
def test_rolebinding_binds_the_component_account(default, component) -> None:
    """Each RoleBinding gives its component's Role to its component's ServiceAccount only."""
    name = f"{FULLNAME}-{component}"
    binding = default.get("RoleBinding", name)
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": name}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name,
                                    "namespace": NAMESPACE}]


# -- the dashboard -----------------------------------------------------------------------------

def test_dashboard_deployment_service_and_probes(default) -> None:
    """The dashboard listens on 9000 behind a ClusterIP Service, probed on /livez and /ready."""
    name = f"{FULLNAME}-dashboard"
    dashboard = container(pod_spec(default.get("Deployment", name)), "dashboard")
    assert dashboard["args"] == ["dashboard"]
    assert dashboard["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    assert dashboard["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert dashboard["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    service = default.get("Service", name)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 9000, "targetPort": "http",
                                         "protocol": "TCP", "appProtocol": "http"}]


def test_dashboard_environment(default) -> None:
    """The dashboard gets its namespace from the downward API and the Oracle pods' selector."""
    name = f"{FULLNAME}-dashboard"
    env = environment(default, container(pod_spec(default.get("Deployment", name)), "dashboard"))
    assert env.pop("ORACLE_NAMESPACE") == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    selector = env.pop("ORACLE_POD_SELECTOR")
    assert env == {"DASHBOARD_PORT": "9000", "DASHBOARD_REFRESH": "5", "ORACLE_HTTP_PORT": "9090",
                   "ALERT_STATE_CONFIGMAP": f"{FULLNAME}-alerter-state", "LOG_LEVEL": "INFO"}
    pod_labels = default.get("Deployment", FULLNAME)["spec"]["template"]["metadata"]["labels"]
    wanted = dict(pair.split("=", 1) for pair in selector.split(","))
    assert wanted.items() <= pod_labels.items()
    dashboard_labels = default.get("Deployment", name)["spec"]["template"]["metadata"]["labels"]
    assert not wanted.items() <= dashboard_labels.items()


# -- the alerter -------------------------------------------------------------------------------

def cronjob(r: Rendered) -> dict[str, Any]:
    """The alerter's CronJob."""
    return r.get("CronJob", f"{FULLNAME}-alerter")


def test_alerter_cronjob_schedule_and_deadlines(default) -> None:
    """Every minute, never overlapping, with deadlines, no retries and bounded history."""
    job = cronjob(default)
    spec = job["spec"]
    assert spec["schedule"] == "* * * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == 30
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (1, 3)
    job_spec = spec["jobTemplate"]["spec"]
    assert job_spec["backoffLimit"] == 0
    assert pod_spec(job)["restartPolicy"] == "Never"
    alerter = container(pod_spec(job), "alerter")
    assert alerter["args"] == ["alert"]
    env = environment(default, alerter)
    assert int(env["ALERT_DEADLINE"]) < job_spec["activeDeadlineSeconds"]


def test_alerter_environment(default) -> None:
    """The alerter's thresholds, state ConfigMap and dashboard hint reach its environment."""
    env = environment(default, container(pod_spec(cronjob(default)), "alerter"))
    assert env.pop("ORACLE_NAMESPACE") == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    env.pop("ORACLE_POD_SELECTOR")
    assert env == {
        "ORACLE_HTTP_PORT": "9090",
        "ALERT_STATE_CONFIGMAP": f"{FULLNAME}-alerter-state",
        "ALERT_COOLDOWN": "300",
        "ALERT_ERROR_RATE_PERCENT": "5",
        "ALERT_P95_SECONDS": "10",
        "ALERT_WINDOW": "5m",
        "ALERT_MIN_REQUESTS": "20",
        "ALERT_DEADLINE": "40",
        "ALERT_DASHBOARD_HINT": f"kubectl port-forward --namespace {NAMESPACE} "
                                f"svc/{FULLNAME}-dashboard 9000:9000",
        "TELEGRAM_API_URL": "https://api.telegram.org",
        "LOG_LEVEL": "INFO",
    }


def test_state_configmap_has_no_data_to_overwrite(default) -> None:
    """The chart sets no data in the state ConfigMap, so an upgrade keeps the alerter's state."""
    state = default.get("ConfigMap", f"{FULLNAME}-alerter-state")
    assert set(state) == {"apiVersion", "kind", "metadata"}


def test_alerter_deadline_must_be_below_the_job_deadline(chart) -> None:
    """alerter.deadline at or above activeDeadlineSeconds fails with a message that says why."""
    with pytest.raises(helm.HelmRenderError, match=r"alerter\.deadline \(50\) must be below"):
        chart.render({"alerter": {"deadline": 50}}, name=RELEASE, namespace=NAMESPACE)


def test_secret_values_appear_only_in_the_secret(full) -> None:
    """The token and chat id are in the chart's Secret and in no other object, env or NOTES."""
    secret = full.get("Secret", f"{FULLNAME}-telegram")
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {
        "bot-token": TOKEN, "chat-id": CHAT_ID}
    needles = [TOKEN, CHAT_ID, *(base64.b64encode(s.encode()).decode() for s in (TOKEN, CHAT_ID))]
    for doc in full.docs:
        if doc is secret:
            continue
        text = json.dumps(doc)
        for needle in needles:
            assert needle not in text, f"{doc['kind']}/{doc['metadata']['name']} holds a secret"
    for needle in needles:
        assert needle not in full.notes


def test_token_is_a_file_and_chat_id_a_secret_ref(full) -> None:
    """The bot token comes as a mounted Secret file, the chat id through secretKeyRef."""
    spec = pod_spec(cronjob(full))
    alerter = container(spec, "alerter")
    env = environment(full, alerter)
    secret_name = f"{FULLNAME}-telegram"
    assert env["NPS_CHAT_ID"] == {"secretKeyRef": {"name": secret_name, "key": "chat-id"}}
    assert "NPS_BOT_TOKEN" not in env
    token_file = env["NPS_BOT_TOKEN_FILE"]
    (mount,) = [m for m in alerter["volumeMounts"] if token_file.startswith(m["mountPath"] + "/")]
    assert mount["readOnly"] is True
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == secret_name
    assert volume["secret"]["items"] == [{"key": "bot-token", "path": "bot-token"}]
    assert posixpath.basename(token_file) == "bot-token"


def test_existing_secret_renders_no_secret(rendered) -> None:
    """With alerter.telegram.existingSecret the chart makes no Secret and uses the named one."""
    r = rendered["existing-secret", True]
    assert r.kinds("Secret") == []
    spec = pod_spec(cronjob(r))
    env = environment(r, container(spec, "alerter"))
    assert env["NPS_CHAT_ID"] == {"secretKeyRef": {"name": "oracle-telegram", "key": "chat"}}
    assert env["NPS_BOT_TOKEN_FILE"].endswith("/token")
    volume = next(v for v in spec["volumes"] if "secret" in v)
    assert volume["secret"]["secretName"] == "oracle-telegram"


def test_no_credentials_means_log_only(default) -> None:
    """Without credentials there is no Secret, no Telegram env and a warning in NOTES."""
    assert default.kinds("Secret") == []
    spec = pod_spec(cronjob(default))
    env = environment(default, container(spec, "alerter"))
    assert not {"NPS_CHAT_ID", "NPS_BOT_TOKEN_FILE"} & env.keys()
    assert all("secret" not in v for v in spec["volumes"])
    assert "only logs its alerts" in default.notes


def test_half_the_credentials_is_an_error(chart) -> None:
    """A bot token without a chat id fails with a message naming both keys."""
    with pytest.raises(helm.HelmRenderError, match="set both botToken and chatId"):
        chart.render({"alerter": {"telegram": {"botToken": TOKEN}}},
                     name=RELEASE, namespace=NAMESPACE)


# -- switches ----------------------------------------------------------------------------------

@pytest.mark.parametrize("component", ["dashboard", "alerter"])
def test_disabling_a_component_removes_all_of_its_objects(chart, default, component) -> None:
    """With COMPONENT.enabled false no object of it is rendered and nothing else refers to it."""
    assert default.component(component)
    r = render(chart, {component: {"enabled": False}})
    assert r.component(component) == []
    prefix = f"{FULLNAME}-{component}"
    for doc in r.docs:
        assert prefix not in json.dumps(doc), f"{doc['kind']}/{doc['metadata']['name']}"
    assert prefix not in r.notes


def test_minimal_scenario_is_the_oracle_alone(rendered) -> None:
    """With the dashboard, alerter and tests off, only the Oracle's own objects remain."""
    r = rendered["minimal", True]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in r.docs) == [
        ("ConfigMap", f"{FULLNAME}-sidecar"),
        ("Deployment", FULLNAME),
        ("Service", FULLNAME),
    ]


# -- optional objects --------------------------------------------------------------------------

def test_podmonitor_scrapes_the_sidecar_port(full) -> None:
    """The PodMonitor selects the Oracle pods and scrapes /metrics on the port named metrics."""
    (monitor,) = full.kinds("PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    assert set(spec) == {"selector", "podMetricsEndpoints"}
    pod_labels = full.get("Deployment", FULLNAME)["spec"]["template"]["metadata"]["labels"]
    assert set(spec["selector"]) == {"matchLabels"}
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    assert spec["podMetricsEndpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}]
    port_names = {p["name"] for c in containers(oracle_pod(full)) for p in c["ports"]}
    assert "metrics" in port_names


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_podmonitor_and_scrape_annotations_name_the_same_port_and_path(rendered, case) -> None:
    """The PodMonitor's port name and the prometheus.io/port number are the same container port."""
    r = rendered[case]
    template = r.get("Deployment", FULLNAME)["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    ports = {p["name"]: p["containerPort"] for c in containers(template["spec"])
             for p in c.get("ports", [])}
    assert annotations["prometheus.io/port"] == str(ports["metrics"])
    for monitor in r.kinds("PodMonitor"):
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert str(ports[endpoint["port"]]) == annotations["prometheus.io/port"]
            assert endpoint["path"] == annotations["prometheus.io/path"]


def test_podmonitor_and_scrape_annotations_follow_a_changed_port(chart) -> None:
    """With sidecar.port 9191 the annotation, the container port and the PodMonitor all move."""
    r = render(chart, {"podMonitor": {"enabled": True}, "sidecar": {"port": 9191}})
    template = r.get("Deployment", FULLNAME)["spec"]["template"]
    assert template["metadata"]["annotations"]["prometheus.io/port"] == "9191"
    assert container(template["spec"], "sidecar")["ports"][0]["containerPort"] == 9191
    (monitor,) = r.kinds("PodMonitor")
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]


def prometheus_rules(r: Rendered) -> dict[str, dict[str, Any]]:
    """The rules of the one PrometheusRule, by alert name."""
    (rule,) = r.kinds("PrometheusRule")
    (group,) = rule["spec"]["groups"]
    return {item["alert"]: item for item in group["rules"]}


def test_prometheus_rule_field_by_field(rendered) -> None:
    """The PrometheusRule has the operator's shape: groups of alerts with severity and notes."""
    r = rendered["monitoring", True]
    (rule,) = r.kinds("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(rule["metadata"]) == {"name", "labels"}
    assert rule["metadata"]["name"] == FULLNAME
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert set(rule["spec"]) == {"groups"}
    (group,) = rule["spec"]["groups"]
    assert set(group) == {"name", "rules"} and group["name"] == "oracle-sidecar"
    alerts = [item["alert"] for item in group["rules"]]
    assert alerts == ["OracleSidecarDown", "OracleSidecarAbsent", "OracleDegraded",
                      "OraclePushesStale", "OracleErrorRateHigh", "OracleErrorRateHighAllRPCs",
                      "OracleLatencyP95High"]
    for item in group["rules"]:
        where = item["alert"]
        assert set(item) == {"alert", "expr", "for", "labels", "annotations"}, where
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", item["alert"]), where
        assert isinstance(item["expr"], str) and item["expr"].strip(), where
        assert item["for"] == "1m", where
        assert item["labels"]["severity"] in {"critical", "warning"}, where
        assert item["labels"]["team"] == "nps", where
        assert all(isinstance(v, str) for v in item["labels"].values()), where
        notes = item["annotations"]
        assert set(notes) == {"summary", "description", "runbook_url"}, where
        assert all(isinstance(v, str) and v for v in notes.values()), where
        assert notes["runbook_url"] == ("https://example.com/runbooks/oracle-sidecar#"
                                        + item["alert"].lower()), where
    severities = {item["alert"]: item["labels"]["severity"] for item in group["rules"]}
    assert {a for a, s in severities.items() if s == "critical"} == {
        "OracleSidecarDown", "OracleSidecarAbsent", "OracleDegraded"}


def test_prometheus_rule_thresholds_follow_the_alerter_values(chart) -> None:
    """Error rate, P95, window, minimum calls and the stale limit come from the same values."""
    r = render(chart, {"prometheusRule": {"enabled": True, "for": "2m"},
                       "alerter": {"errorRatePercent": 2.5, "p95Seconds": 4, "window": "1h",
                                   "minRequests": 50},
                       "sidecar": {"staleAfter": 9}})
    rules = prometheus_rules(r)
    assert all(item["for"] == "2m" for item in rules.values())
    assert ") * 100 > 2.5\nand\n" in rules["OracleErrorRateHigh"]["expr"]
    assert "[1h])) >= 50" in rules["OracleErrorRateHigh"]["expr"]
    assert "[1h])) > 4\nand\n" in rules["OracleLatencyP95High"]["expr"]
    assert rules["OraclePushesStale"]["expr"].endswith("} > 9")
    assert "grpc_code!~\"OK\"" in rules["OracleErrorRateHighAllRPCs"]["expr"]


def test_prometheus_rule_excluded_codes_and_selector(chart, rendered) -> None:
    """Excluded codes leave the error side only; the default selector matches Oracle pods only."""
    rules = prometheus_rules(rendered["monitoring", True])
    expr = rules["OracleErrorRateHigh"]["expr"]
    assert expr.count('grpc_code!~"OK|NotFound|AlreadyExists|Canceled"') == 1
    assert expr.count("grpc_code") == 4  # the one matcher and three `without (grpc_code)`
    assert "other than OK, NotFound, AlreadyExists, Canceled" in rules[
        "OracleErrorRateHigh"]["annotations"]["description"]
    match = re.search(r'namespace="([^"]+)", pod=~"([^"]+)"', rules["OracleSidecarDown"]["expr"])
    assert match is not None and match[1] == NAMESPACE
    pods = re.compile(match[2].replace("\\\\", "\\"))
    assert pods.fullmatch(f"{FULLNAME}-7d9c5b8f4-x2x7k")
    for other in (f"{FULLNAME}-dashboard-5f6d8c9b7-abcde", f"{FULLNAME}-alerter-29012345-qwert",
                  f"{FULLNAME}-test", f"other-{FULLNAME}-7d9c5b8f4-x2x7k"):
        assert not pods.fullmatch(other), other
    custom = prometheus_rules(render(chart, {"prometheusRule": {
        "enabled": True, "selector": 'job="oracle"'}}))
    assert all('job="oracle"' in item["expr"] and "namespace=" not in item["expr"]
               for item in custom.values())


def test_prometheus_rule_maps_the_spec_spelling_of_excluded_codes(chart) -> None:
    """excludedCodes in the spec's spelling (NOT_FOUND) become Go's names, once each."""
    excluded = ["NOT_FOUND", "Canceled", "NotFound", "DEADLINE_EXCEEDED"]
    rules = prometheus_rules(render(chart, {"prometheusRule": {
        "enabled": True, "excludedCodes": excluded}}))
    expr = rules["OracleErrorRateHigh"]["expr"]
    assert 'grpc_code!~"OK|NotFound|Canceled|DeadlineExceeded"' in expr


def test_grafana_dashboard_configmap_holds_the_dashboard_file(rendered) -> None:
    """The ConfigMap carries grafana_dashboard "1" and the repository's dashboard JSON unchanged."""
    (config,) = [d for d in rendered["monitoring", True].kinds("ConfigMap")
                 if d["metadata"]["name"] == f"{FULLNAME}-grafana-dashboard"]
    metadata = config["metadata"]
    assert metadata["labels"]["grafana_dashboard"] == "1"
    assert metadata["namespace"] == "monitoring"
    assert metadata["annotations"] == {"grafana_folder": "Oracle"}
    (name,) = config["data"]
    assert name.endswith(".json")
    dashboard = json.loads(config["data"][name])
    assert dashboard == json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"


def test_monitoring_objects_are_off_by_default(default) -> None:
    """No PodMonitor, PrometheusRule or dashboard ConfigMap unless asked for."""
    assert default.kinds("PodMonitor") == default.kinds("PrometheusRule") == []
    assert not [d for d in default.kinds("ConfigMap")
                if "grafana_dashboard" in d["metadata"]["labels"]]


def test_pod_disruption_budget(chart, full) -> None:
    """The PodDisruptionBudget selects the Oracle pods with minAvailable, or maxUnavailable."""
    (pdb,) = full.kinds("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1 and "maxUnavailable" not in pdb["spec"]
    r = render(chart, {"podDisruptionBudget": {"enabled": True, "maxUnavailable": "50%"}})
    (pdb,) = r.kinds("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == "50%" and "minAvailable" not in pdb["spec"]


def test_network_policy_admits_only_the_listed_peers(full) -> None:
    """gRPC from grpcFrom; the metrics port from the release's own clients and metricsFrom."""
    (policy,) = full.kinds("NetworkPolicy")
    grpc_rule, metrics_rule = policy["spec"]["ingress"]
    assert grpc_rule["ports"] == [{"port": 50052, "protocol": "TCP"}]
    assert grpc_rule["from"] == [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "oracle-client"}}}]
    assert metrics_rule["ports"] == [{"port": 9090, "protocol": "TCP"}]
    components = {peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                  for peer in metrics_rule["from"] if "podSelector" in peer}
    assert components == {"dashboard", "alerter", "test"}
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
            } in metrics_rule["from"]


def test_network_policy_never_opens_metrics_to_everyone(chart) -> None:
    """With no client and no metricsFrom there is no metrics rule, never a rule without "from"."""
    r = render(chart, merge(scenario_values("minimal"), {"networkPolicy": {"enabled": True}}))
    (policy,) = r.kinds("NetworkPolicy")
    assert [rule["ports"][0]["port"] for rule in policy["spec"]["ingress"]] == [50052]


def test_helm_test_pod_checks_ready_and_metrics(default) -> None:
    """The test hook pod calls /ready and /metrics on the Oracle Service's metrics port."""
    pod = default.get("Pod", f"{FULLNAME}-test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (check,) = pod["spec"]["containers"]
    script = check["command"][-1]
    assert '"/ready"' in script and '"/metrics"' in script
    assert check["args"] == [f"http://{FULLNAME}.{NAMESPACE}.svc:9090"]
    compile(script, "test-sidecar", "exec")


def test_notes_give_the_exact_commands(default) -> None:
    """NOTES.txt has the dashboard port-forward and curl commands for the sidecar endpoints."""
    notes = default.notes
    forward = f"kubectl port-forward --namespace {NAMESPACE}"
    assert f"{forward} svc/{FULLNAME}-dashboard 9000:9000" in notes
    assert f"{forward} svc/{FULLNAME} 9090:9090" in notes
    for path in ("/health", "/ready", "/metrics", "/api/v1/snapshot"):
        assert re.search(rf"curl .*http://127\.0\.0\.1:9090{re.escape(path)}\b", notes), path


# -- values, schema, metadata, docs ------------------------------------------------------------

@pytest.mark.parametrize(("values", "message"), [
    ({"replicaCont": 1}, r"additional properties 'replicaCont' not allowed"),
    ({"oracle": {"replicaCount": -1}}, r"/oracle/replicaCount'?: minimum: got -1, want 0"),
    ({"dashboard": {"enabled": "yes"}}, r"/dashboard/enabled'?: got string, want boolean"),
    ({"image": {"pullPolicy": "Sometimes"}},
     r"/image/pullPolicy'?: value must be one of 'Always', 'IfNotPresent', 'Never'"),
    ({"sidecar": {"native": "maybe"}}, r"/sidecar/native'?: value must be one of 'auto'"),
    ({"alerter": {"window": "2m"}}, r"/alerter/window'?: value must be one of '1m', '5m', '1h'"),
    ({"alerter": {"telegram": {"botTokne": "x"}}},
     r"/alerter/telegram'?: additional properties 'botTokne' not allowed"),
    ({"sidecar": {"port": 70000}}, r"/sidecar/port'?: maximum: got 70,?000, want 65,?535"),
    ({"prometheusRule": {"excludedCodes": ["NotFond"]}},
     r"/prometheusRule/excludedCodes/0'?: value must be one of 'Canceled', 'Unknown'"),
], ids=["unknown-key", "negative-replicas", "wrong-type", "bad-pull-policy", "bad-native",
        "bad-window", "nested-typo", "port-range", "bad-code"])
def test_schema_rejects_bad_values_clearly(chart, values, message) -> None:
    """values.schema.json rejects bad input with a message naming the key and the rule."""
    with pytest.raises(helm.HelmValuesError, match=message):
        chart.validate_schema(values)


def leaves(values: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for every leaf of a values tree; empty maps and lists are leaves."""
    if isinstance(values, dict) and values:
        for key, value in values.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix, values


def schema_node(schema: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The schema of a dotted key, or None when the schema does not describe it."""
    node: dict[str, Any] | None = schema
    for part in key.split("."):
        node = node.get("properties", {}).get(part) if node is not None else None
    return node


def test_schema_describes_every_value_with_its_default(chart) -> None:
    """Every top-level and section key has a description in the schema, and its default."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart.validate_schema(values)
    missing, wrong = [], []
    for key, value in leaves(values):
        node = schema_node(schema, key)
        parent = key
        while node is None and "." in parent:
            parent = parent.rsplit(".", 1)[0]
            node = schema_node(schema, parent)
        assert node is not None, key
        if not node.get("description"):
            missing.append(parent)
        if parent == key and "default" in node and node["default"] != value:
            wrong.append((key, node["default"], value))
        elif parent != key and "default" in node:
            path = key.removeprefix(parent + ".").split(".")
            default = node["default"]
            for part in path:
                default = default.get(part) if isinstance(default, dict) else None
            if default != value:
                wrong.append((key, default, value))
    assert (missing, wrong) == ([], [])


def test_every_values_key_has_a_comment_above_it() -> None:
    """Each key in values.yaml has a comment on the line above it."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    bare = [f"{number}: {line.strip()}" for number, line in enumerate(lines, 1)
            if re.match(r"^\s*[A-Za-z0-9_.-]+:", line)
            and not lines[number - 2].lstrip().startswith("#")]
    assert bare == []


def test_readme_values_table_matches_values_yaml() -> None:
    """The README's values table lists exactly the keys of values.yaml with their defaults."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    table = {}
    for line in (CHART / "README.md").read_text().splitlines():
        match = re.match(r"^\| `([^`]+)` \| `(.*?)` \| (.+) \|$", line)
        if match:
            table[match[1]] = json.loads(match[2])
    assert table == dict(leaves(values))


def test_chart_metadata() -> None:
    """Chart.yaml is apiVersion v2, states kubeVersion, and its appVersion is the package's."""
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2"
    assert meta["kubeVersion"] == ">=1.28.0-0"
    assert meta["appVersion"] == sidecar.__version__
    assert (CHART / "templates" / "NOTES.txt").is_file()
    assert (CHART / "values.schema.json").is_file()


def _documented_installs() -> list[tuple[str, str]]:
    """Every `helm install … charts/oracle …` command of README.md and the chart's README."""
    found = []
    for doc in (CHART.parent.parent / "README.md", CHART / "README.md"):
        for line in doc.read_text().splitlines():
            line = line.strip()
            if line.startswith("helm install ") and "charts/oracle" in line:
                found.append((str(doc.relative_to(CHART.parent.parent)), line))
    return found


@pytest.mark.parametrize("command", [c for _, c in _documented_installs()])
def test_documented_helm_install_commands_render_as_written(chart: helm.Chart,
                                                            command: str) -> None:
    """Each README `helm install` renders with its --set values (no `required` value missing)."""
    words = command.split()
    release = words[2]
    values: dict[str, Any] = {}
    for i, word in enumerate(words):
        if word == "--set":
            path, _, value = words[i + 1].partition("=")
            node = values
            *parents, leaf = path.split(".")
            for key in parents:
                node = node.setdefault(key, {})
            if leaf.endswith("]"):  # name[0]=value: Helm's list index
                name, _, index = leaf[:-1].partition("[")
                items = node.setdefault(name, [])
                items.extend([None] * (int(index) + 1 - len(items)))
                items[int(index)] = value
            else:
                node[leaf] = value
        elif word.startswith("--") and word not in ("--namespace", "--create-namespace"):
            raise AssertionError(f"unexpected flag {word} in {command!r}")
    out = render(chart, values, release=release)
    oracle = next(d for d in out.kinds("Deployment")
                  if d["metadata"]["labels"]["app.kubernetes.io/component"] == "oracle")
    images = [c["image"] for c in oracle["spec"]["template"]["spec"]["containers"]]
    want = values.get("oracle", {}).get("image", {})
    if want:
        assert f"{want['repository']}:{want['tag']}" in images


def test_readmes_show_an_install_with_an_oracle_image() -> None:
    """Both READMEs show how to install with one's own Oracle image, and the reporter's snippet."""
    docs = _documented_installs()
    assert {name for name, c in docs if "oracle.image.tag=" in c} == {
        "README.md", "charts/oracle/README.md"}
    for doc in (CHART.parent.parent / "README.md", CHART / "README.md"):
        assert "RUN pip install --no-cache-dir /tmp/oracle-sidecar" in doc.read_text()
