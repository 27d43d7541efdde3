"""The Helm chart (deploy/helm/paygate), rendered and checked offline: no cluster is needed.

`helm template` (Helm built with Go by `make helm`) renders the chart for 1 and for 5 app
replicas; every object is validated against the Kubernetes OpenAPI schemas that the
kubernetes-validate wheel ships, strictly (an unknown field is an error). The one object
those schemas cannot know, the Prometheus Operator's ServiceMonitor (a CRD), gets a check of
its own: it must select the app's Service and name one of its ports. Then what the chart
promises: replicas and probes, secrets only from values, the dashboard, provisioning, rules
and Locust package read from the repo's own files (links, not copies), databases inside the
cluster only, Prometheus reaching the app's pods (checked with promtool), Zipkin with
`tracing.enabled` (and none of it without), and `helm lint`.

Marked `services`: it starts no server, but it needs helm and promtool as `make test` installs
them, which `pytest -m unit` never asks for. A missing binary fails the test (MissingService).
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

import rig

ROOT = rig.ROOT
CHART = ROOT / "deploy" / "helm" / "paygate"
HELM = Path(os.environ.get("HELM_BIN", ROOT / ".cache" / "bin" / "helm"))
# The cluster version rendered for and validated against: the client-go of the Helm in tools/helm.
KUBE_VERSION = "1.34.0"
RELEASE, NAMESPACE = "workshop", "paygate"
PREFIX = f"{RELEASE}-paygate"
SECRETS = {"adminToken": "test-admin-token", "paygateSecretKey": "test-secret-key",
           "grafanaAdminPassword": "test-grafana-password"}
# The Secret's keys for each value, and what the app and Grafana read them as.
SECRET_KEYS = {"adminToken": "ADMIN_TOKEN", "paygateSecretKey": "PAYGATE_SECRET_KEY",
               "grafanaAdminPassword": "GRAFANA_ADMIN_PASSWORD"}
# Custom resources: not in the Kubernetes schemas; each has its own check below.
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
EXPECTED_KINDS = {"Secret", "ConfigMap", "Deployment", "StatefulSet", "Service", "ServiceAccount", "Role",
                  "RoleBinding", "ServiceMonitor"}
APP_COMPONENTS = ("app", "mongo", "redis", "prometheus", "grafana", "locust", "locust-worker", "zipkin")
# What the app is told about traces, only while tracing.enabled.
TRACING_ENV = {"OTEL_EXPORTER_ZIPKIN_ENDPOINT", "TRACES_UI_URL"}

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def helm() -> str:
    return rig.require(HELM)


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=60)


def sets(flag: str = "--set", **values) -> list[str]:
    return [arg for name, value in values.items() for arg in (flag, f"{name}={value}")]


def template(helm: str, *extra: str, secrets: dict | None = None) -> subprocess.CompletedProcess:
    secrets = SECRETS if secrets is None else secrets
    return run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION,
                    *sets("--set-string", **{f"secrets.{k}": v for k, v in secrets.items()}), *extra)


def by_name(objects: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} rendered"
    return found[0]


def pod_spec(objects: list[dict], component: str, kind: str = "Deployment") -> dict:
    return by_name(objects, kind, f"{PREFIX}-{component}")["spec"]["template"]["spec"]


def container(objects: list[dict], component: str, kind: str = "Deployment") -> dict:
    return pod_spec(objects, component, kind)["containers"][0]


@pytest.fixture(scope="module", params=[1, 5], ids=["1-replica", "5-replicas"])
def rendered(request, helm) -> tuple[int, list[dict]]:
    """(replicas, the objects) of the chart with the ServiceMonitor switched on, so it is rendered too."""
    out = template(helm, *sets(**{"app.replicas": request.param, "locust.workers.replicas": request.param,
                                  "serviceMonitor.enabled": "true"}))
    assert out.returncode == 0, out.stderr
    return request.param, [o for o in yaml.safe_load_all(out.stdout) if o]


def check_service_monitor(monitor: dict, objects: list[dict]) -> list[str]:
    """A CRD has no schema here: check what makes it work, that it selects the app's Service and names its port."""
    service = by_name(objects, "Service", f"{PREFIX}-app")
    labels, ports = service["metadata"]["labels"], {p["name"] for p in service["spec"]["ports"]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    errors = [] if selector.items() <= labels.items() else [f"selector {selector} misses the app Service"]
    errors += [f"endpoint port {e.get('port')} is not one of the Service's {ports}" for e in monitor["spec"]["endpoints"]
               if e.get("port") not in ports or e.get("path") != "/metrics"]
    return errors + [f"unknown top-level field {k}" for k in set(monitor) - {"apiVersion", "kind", "metadata", "spec"}]


def test_every_object_validates_against_the_kubernetes_schemas(rendered):
    _, objects = rendered
    assert {o["kind"] for o in objects} == EXPECTED_KINDS
    errors = []
    for obj in objects:
        where = f"{obj['kind']} {obj['metadata']['name']}"
        if (obj["apiVersion"], obj["kind"]) in CRDS:
            errors += [f"{where}: {e}" for e in check_service_monitor(obj, objects)]
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{where}: {'.'.join(map(str, e.path))}: {e.message}")
    assert not errors, "\n".join(errors)


def test_strict_validation_rejects_an_unknown_field(rendered):
    # The schemas are the strict ones: a misspelt field (here readinessProbe) is an error, not ignored.
    _, objects = rendered
    deployment = by_name(objects, "Deployment", f"{PREFIX}-app")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)
    del deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"]


def test_app_deployment_replicas_probes_and_compose_env(rendered):
    replicas, objects = rendered
    assert by_name(objects, "Deployment", f"{PREFIX}-app")["spec"]["replicas"] == replicas
    app = container(objects, "app")
    assert app["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert app["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert {p["name"]: p["containerPort"] for p in app["ports"]} == {"http": 8000}
    assert app["image"] == "paygate-chaos-kit:1.0.0"
    assert app["resources"]["requests"] and app["resources"]["limits"]["memory"]
    # The app service of docker-compose.yml sets the same variables.
    compose_env = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["app"]["environment"]
    env = {e["name"]: e for e in app["env"]}
    assert set(env) == set(compose_env)
    assert env["MONGO_URL"]["value"] == f"mongodb://{PREFIX}-mongo:27017/"
    assert env["REDIS_URL"]["value"] == f"redis://{PREFIX}-redis:6379/0"
    assert by_name(objects, "Deployment", f"{PREFIX}-locust-worker")["spec"]["replicas"] == replicas


def test_every_container_has_resources_and_drops_privileges(rendered):
    _, objects = rendered
    pods = [o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    assert len(pods) == len(APP_COMPONENTS)
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], c["name"]
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, c["name"]


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_rendering_without_a_secret_fails_and_names_it(helm, missing):
    for value in (None, ""):
        secrets = {k: v for k, v in SECRETS.items() if k != missing} | ({} if value is None else {missing: value})
        out = template(helm, secrets=secrets)
        assert out.returncode != 0 and f"set secrets.{missing}" in out.stderr, out.stderr
        assert "no working secret ships with the chart" in out.stderr


def test_values_ship_no_secret():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["secrets"] == dict.fromkeys(SECRETS, "")


def test_secrets_reach_the_pods_only_through_the_secret(rendered):
    _, objects = rendered
    secret = by_name(objects, "Secret", PREFIX)
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {
        SECRET_KEYS[k]: v for k, v in SECRETS.items()}
    env = container(objects, "app")["env"] + container(objects, "grafana")["env"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
    assert refs == {name: {"name": PREFIX, "key": name} for name in SECRET_KEYS.values()
                    if name != "GRAFANA_ADMIN_PASSWORD"} | {
        "GF_SECURITY_ADMIN_PASSWORD": {"name": PREFIX, "key": "GRAFANA_ADMIN_PASSWORD"}}
    manifests = yaml.safe_dump_all([o for o in objects if o["kind"] != "Secret"])
    assert not [v for v in SECRETS.values() if v in manifests]


def test_the_repos_files_are_linked_into_the_chart_not_copied():
    for link, target in (("dashboards", ROOT / "dashboards"), ("loadtest", ROOT / "loadtest")):
        path = CHART / "files" / link
        assert path.is_symlink() and not Path(os.readlink(path)).is_absolute(), path
        assert path.resolve() == target


def test_dashboard_provisioning_and_rules_are_composes_files(rendered):
    _, objects = rendered
    dashboards = by_name(objects, "ConfigMap", f"{PREFIX}-grafana-dashboards")["data"]
    assert dashboards == {"paygate.json": (ROOT / "dashboards/grafana/dashboards/paygate.json").read_text()}
    provisioning = by_name(objects, "ConfigMap", f"{PREFIX}-grafana-provisioning")["data"]
    assert provisioning["dashboards.yml"] == (ROOT / "dashboards/grafana/provisioning/dashboards/paygate.yml").read_text()
    # Compose's datasources, Prometheus's then Zipkin's, with only their urls pointed at the chart's services.
    sources_dir = ROOT / "dashboards/grafana/provisioning/datasources"
    compose_sources = yaml.safe_load((sources_dir / "prometheus.yml").read_text())
    for source in compose_sources["datasources"]:
        source["url"] = f"http://{PREFIX}-prometheus:9090"
    for source in yaml.safe_load((sources_dir / "zipkin.yml").read_text())["datasources"]:
        compose_sources["datasources"].append({**source, "url": f"http://{PREFIX}-zipkin:9411"})
    chart_sources = yaml.safe_load(provisioning["datasources.yml"])
    assert chart_sources == compose_sources
    assert [s["uid"] for s in chart_sources["datasources"]] == ["paygate-prometheus", "paygate-zipkin"]
    rules = by_name(objects, "ConfigMap", f"{PREFIX}-prometheus")["data"]["paygate.yml"]
    assert rules == (ROOT / "dashboards/prometheus/rules/paygate.yml").read_text()
    # Grafana as in compose: anonymous viewers, the dashboard as home, mounted where its provider looks.
    grafana = pod_spec(objects, "grafana")
    env = {e["name"]: e.get("value") for e in grafana["containers"][0]["env"]}
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true" and env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    mounts = {m["name"]: m["mountPath"] for m in grafana["containers"][0]["volumeMounts"]}
    assert env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == mounts["dashboards"] + "/paygate.json"


def test_locust_runs_the_repos_loadtest_package_against_the_app(rendered):
    _, objects = rendered
    package = by_name(objects, "ConfigMap", f"{PREFIX}-loadtest")["data"]
    for name in ("__init__.py", "locustfile.py", "shapes.py", "plan.py", "checkout.py", "locust.conf", "plan.default.json"):
        assert package[name] == (ROOT / "loadtest" / name).read_text(), name
    master, worker = container(objects, "locust"), container(objects, "locust-worker")
    assert f"--host=http://{PREFIX}-app:8000" in master["args"] and "--master" in master["args"]
    assert f"--master-host={PREFIX}-locust" in worker["args"]
    for c in (master, worker):
        assert {m["mountPath"] for m in c["volumeMounts"]} == {"/home/locust/loadtest"}
    service = by_name(objects, "Service", f"{PREFIX}-locust")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"web": 8089, "master": 5557}


def test_databases_are_cluster_internal(helm, rendered):
    _, objects = rendered
    services = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "Service"}
    assert {name: spec["type"] for name, spec in services.items()} == dict.fromkeys(
        (f"{PREFIX}-{c}" for c in ("app", "mongo", "redis", "prometheus", "grafana", "locust", "zipkin")), "ClusterIP")
    # Opening every part to the room that the chart lets open leaves the databases inside the cluster.
    parts = {"app": "app", "grafana": "grafana", "locust": "locust", "prometheus": "prometheus", "tracing": "zipkin"}
    out = template(helm, *sets(**{f"{value}.service.type": "LoadBalancer" for value in parts}))
    assert out.returncode == 0, out.stderr
    types = {o["metadata"]["name"]: o["spec"]["type"] for o in yaml.safe_load_all(out.stdout) if o and o["kind"] == "Service"}
    assert types[f"{PREFIX}-mongo"] == types[f"{PREFIX}-redis"] == "ClusterIP"
    assert {name for name, kind in types.items() if kind == "LoadBalancer"} == {f"{PREFIX}-{c}" for c in parts.values()}
    for db in ("mongo", "redis"):
        assert "nodePort" not in str(services[f"{PREFIX}-{db}"]) and "externalIPs" not in services[f"{PREFIX}-{db}"]


def test_prometheus_discovers_the_app_pods(rendered, tmp_path):
    _, objects = rendered
    app_pods = by_name(objects, "Deployment", f"{PREFIX}-app")["spec"]["template"]
    annotations, labels = app_pods["metadata"]["annotations"], app_pods["metadata"]["labels"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == app_pods["spec"]["containers"][0]["ports"][0]["containerPort"]
    config_map = by_name(objects, "ConfigMap", f"{PREFIX}-prometheus")["data"]
    config = yaml.safe_load(config_map["prometheus.yml"])
    (job,) = config["scrape_configs"]
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod" and sd["namespaces"]["names"] == [NAMESPACE]
    wanted = dict(pair.split("=") for pair in sd["selectors"][0]["label"].split(","))
    assert wanted.items() <= labels.items()
    assert job["relabel_configs"][0] == {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                                         "action": "keep", "regex": "true"}
    # The Role lets Prometheus's ServiceAccount list the pods.
    role = by_name(objects, "Role", f"{PREFIX}-prometheus")
    assert {"list", "watch"} <= set(role["rules"][0]["verbs"]) and role["rules"][0]["resources"] == ["pods"]
    assert pod_spec(objects, "prometheus")["serviceAccountName"] == f"{PREFIX}-prometheus"
    # promtool checks the configuration and the rules, laid out as the Deployment mounts the ConfigMap.
    # Debian's promtool is built without Kubernetes discovery, so it reads the job with a static target
    # in place of kubernetes_sd_configs (checked above): the relabelling and the rule files are its.
    (volume,) = [v for v in pod_spec(objects, "prometheus")["volumes"] if "configMap" in v]
    for item in volume["configMap"]["items"]:
        (tmp_path / item["path"]).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / item["path"]).write_text(config_map[item["key"]])
    job["static_configs"] = [{"targets": ["app:8000"]}]
    del job["kubernetes_sd_configs"]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    out = subprocess.run([rig.require("promtool"), "check", "config", str(tmp_path / "prometheus.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 1 rule files found" in out.stdout + out.stderr


def test_optional_parts_switch_off(helm):
    out = template(helm, *sets(**{"prometheus.enabled": "false", "grafana.enabled": "false", "locust.enabled": "false",
                                  "tracing.enabled": "false"}),
                   secrets={k: v for k, v in SECRETS.items() if k != "grafanaAdminPassword"})
    assert out.returncode == 0, out.stderr
    objects = [o for o in yaml.safe_load_all(out.stdout) if o]
    assert {o["metadata"]["labels"]["app.kubernetes.io/component"] for o in objects} == {"app", "mongo", "redis"}
    assert "ServiceMonitor" not in {o["kind"] for o in objects}


def test_helm_lint(helm):
    out = run_helm(helm, "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION,
                   *sets("--set-string", **{f"secrets.{k}": v for k, v in SECRETS.items()}))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


def test_zipkin_runs_the_rigs_version_in_capped_memory_and_the_app_sends_it_spans(rendered):
    """tracing.enabled (the default): Zipkin's Deployment and ClusterIP Service, the version the tests run
    from its jar, in-memory and capped as in compose, ready while /health says UP; the app's span endpoint
    is that Service and its trace links open tracing.uiUrl."""
    _, objects = rendered
    zipkin = container(objects, "zipkin")
    assert zipkin["image"] == f"openzipkin/zipkin:{rig.ZIPKIN_VERSION}"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["zipkin"]
    env = {e["name"]: e["value"] for e in zipkin["env"]}
    assert env == {name: str(compose["environment"][name]) for name in ("STORAGE_TYPE", "MEM_MAX_SPANS", "JAVA_OPTS")}
    assert zipkin["resources"]["limits"]["memory"] == compose["deploy"]["resources"]["limits"]["memory"].replace("M", "Mi")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert zipkin[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe
    assert pod_spec(objects, "zipkin")["securityContext"]["runAsUser"] != 0
    service = by_name(objects, "Service", f"{PREFIX}-zipkin")
    assert service["spec"]["type"] == "ClusterIP" and [p["port"] for p in service["spec"]["ports"]] == [9411]
    app = {e["name"]: e.get("value") for e in container(objects, "app")["env"]}
    assert app["OTEL_EXPORTER_ZIPKIN_ENDPOINT"] == f"http://{PREFIX}-zipkin:9411/api/v2/spans"
    assert app["TRACES_UI_URL"] == "http://localhost:9411/zipkin/", "a port-forward's address by default"
    assert app["TRACING"] == "on" and app["OTEL_SERVICE_NAME"] == "paygate", "the service the trace links search"


def test_tracing_switches_off_with_zipkin_its_datasource_and_the_apps_endpoint(helm):
    out = template(helm, *sets(**{"tracing.enabled": "false"}))
    assert out.returncode == 0, out.stderr
    objects = [o for o in yaml.safe_load_all(out.stdout) if o]
    assert not [o["metadata"]["name"] for o in objects if "zipkin" in o["metadata"]["name"]]
    app = {e["name"]: e.get("value") for e in container(objects, "app")["env"]}
    assert not TRACING_ENV & set(app) and app["TRACING"] == "off", "the app makes no spans"
    provisioning = by_name(objects, "ConfigMap", f"{PREFIX}-grafana-provisioning")["data"]
    assert [s["uid"] for s in yaml.safe_load(provisioning["datasources.yml"])["datasources"]] == ["paygate-prometheus"]
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) not in CRDS:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
