"""The full stack's files, checked without a Docker engine.

docker-compose.yml is loaded by compose-go, the loader inside Docker Compose v2
(tools/composeconfig): the .env beside it, interpolation, the Compose
specification's JSON schema and its consistency checks, exactly as
`docker compose config` would. The repo holds no .env (no working secret is
committed): the tests load the compose file from a scratch directory with a
.env made from .env.example plus fresh secrets, as `make env` makes it, and
read the resolved project with its paths pointed back at the repo.
The app scales (`docker compose up --scale app=3`): the project loads with
app scaled to 3, the room reaches it only through the load balancer `lb`
(deploy/haproxy/haproxy.cfg), and Prometheus finds every replica by DNS.
The Dockerfile is linted with hadolint plus a few house checks, and its
HEALTHCHECK command, like the balancer's, is run against the app under real
gunicorn; Zipkin's healthcheck is run against the real Zipkin of the rig.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import sys
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import yaml

import rig
from app.config import load_settings
from rig.probe import poll_until

ROOT = rig.ROOT
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
CONFIG_TOOL = ROOT / ".cache" / "bin" / "composeconfig"

# The ports the kit publishes on the host (README and docs/contract.md, Processes and ports);
# the app's 8000 is published by its load balancer.
PUBLISHED = {"lb": 8000, "locust": 8089, "prometheus": 9090, "grafana": 3000, "zipkin": 9411}
# Scaled with `--scale NAME=N`: no published port, no fixed container name.
SCALED = {"app", "locust-worker"}
APP_PORT = 8000
HAPROXY_DIR = ROOT / "deploy" / "haproxy"
# The databases: on the compose network only, never on the host (the room changes the mode
# through the admin API and its token, not by writing to Redis).
INTERNAL = {"mongo": 27017, "redis": 6379}
# Tools started one at a time with `docker compose run`, never by `up`.
TOOLS = {"rehearse"}
# Read by the app with no usable default for the full stack: unset, the app falls back to
# in-process stand-ins (URLs) or per-process random secrets, which is wrong with several workers.
REQUIRED_ENV = ("MONGO_URL", "REDIS_URL", "ADMIN_TOKEN", "PAYGATE_SECRET_KEY")
# Empty in .env.example; compose refuses to start until each has a value.
SECRETS = ("ADMIN_TOKEN", "PAYGATE_SECRET_KEY", "GRAFANA_ADMIN_PASSWORD")
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|_KEY$|CREDENTIAL")
SETUP_HINT = "cp .env.example .env"
MEMORY_BUDGET = 2 * 1024**3

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def composeconfig() -> Path:
    """tools/composeconfig built with Go (the build cache makes a rebuild take about a second)."""
    go = rig.require("go")
    CONFIG_TOOL.parent.mkdir(parents=True, exist_ok=True)
    build = subprocess.run([go, "build", "-trimpath", "-o", str(CONFIG_TOOL), "."], cwd=ROOT / "tools" / "composeconfig",
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    return CONFIG_TOOL


def load(tool: Path, compose_file: Path) -> subprocess.CompletedProcess:
    """Run the loader on a compose file (its .env is the one beside it)."""
    return subprocess.run([str(tool), str(compose_file)], capture_output=True, text=True, timeout=60)


def dotenv(text: str) -> dict[str, str]:
    """NAME=value lines of an env file (comments and blank lines skipped)."""
    return dict(line.split("=", 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))


def env_file(**values: str | None) -> str:
    """.env.example with every secret filled with a fresh value, then `values` set (None: the line dropped)."""
    values = {**{name: secrets.token_urlsafe(18) for name in SECRETS}, **values}
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        name = line.split("=", 1)[0]
        if line.startswith("#") or "=" not in line or name not in values:
            lines.append(line)
        elif values[name] is not None:
            lines.append(f"{name}={values[name]}")
    return "\n".join(lines) + "\n"


def load_with(tool: Path, where: Path, env_text: str | None, compose_text: str | None = None) -> subprocess.CompletedProcess:
    """Load the compose file from `where`, with `env_text` as the .env beside it (None: no .env)."""
    where.mkdir(parents=True, exist_ok=True)
    (where / COMPOSE.name).write_text(COMPOSE.read_text() if compose_text is None else compose_text)
    (where / ".env").unlink(missing_ok=True)
    if env_text is not None:
        (where / ".env").write_text(env_text)
    return load(tool, where / COMPOSE.name)


def rebase(node, old: str, new: str):
    """The resolved project with the paths under `old` (the scratch directory) under `new`."""
    if isinstance(node, dict):
        return {key: rebase(value, old, new) for key, value in node.items()}
    if isinstance(node, list):
        return [rebase(value, old, new) for value in node]
    if isinstance(node, str) and (node == old or node.startswith(old + "/")):
        return new + node[len(old):]
    return node


@pytest.fixture(scope="module")
def project(composeconfig, tmp_path_factory) -> dict:
    """docker-compose.yml resolved with a .env made from .env.example plus fresh secrets,
    as `docker compose config --format json` gives it, its paths in the repo."""
    where = tmp_path_factory.mktemp("compose")
    result = load_with(composeconfig, where, env_file())
    assert result.returncode == 0, f"docker-compose.yml does not load:\n{result.stderr}"
    return rebase(json.loads(result.stdout), str(where), str(ROOT))


@pytest.fixture(scope="module")
def services(project) -> dict:
    return project["services"]


def app_env_names() -> set[str]:
    """Every environment name the app and its gunicorn config read, found in their source."""
    pattern = re.compile(r"""(?:env|environ)(?:\.get\(|\[)\s*["']([A-Z][A-Z0-9_]+)["']|_(?:int|url)\(env,\s*["']([A-Z][A-Z0-9_]+)["']""")
    names = set()
    for source in (ROOT / "app" / "config.py", ROOT / "gunicorn.conf.py"):
        for match in pattern.finditer(source.read_text()):
            names.add(match.group(1) or match.group(2))
    return names


# --- the loader is a real check --------------------------------------------------------------


def test_loader_rejects_what_docker_compose_rejects(composeconfig, tmp_path):
    """A misspelt key fails the schema and a missing required value fails interpolation."""
    text = COMPOSE.read_text()
    assert "    healthcheck:\n" in text
    bad_key = load_with(composeconfig, tmp_path, env_file(), text.replace("    healthcheck:\n", "    healthchek:\n", 1))
    assert bad_key.returncode != 0 and "healthchek" in bad_key.stderr

    no_token = load_with(composeconfig, tmp_path, env_file(ADMIN_TOKEN=None))
    assert no_token.returncode != 0 and "ADMIN_TOKEN" in no_token.stderr


# --- no working secret in the repo ------------------------------------------------------------


@pytest.mark.parametrize("secret", SECRETS)
@pytest.mark.parametrize("how", ["missing", "empty"])
def test_compose_refuses_to_start_without_each_secret(composeconfig, tmp_path, secret, how):
    result = load_with(composeconfig, tmp_path, env_file(**{secret: None if how == "missing" else ""}))
    assert result.returncode != 0
    # The loader's own words, then ours: which variable, and how to set it.
    assert re.search(rf"required variable {secret} is missing a value: set {secret} in \.env \(.*{re.escape(SETUP_HINT)}",
                     result.stderr), result.stderr
    others = set(SECRETS) - {secret}
    assert not any(f"variable {name} " in result.stderr for name in others), result.stderr


def test_a_copied_env_example_or_no_env_at_all_does_not_start(composeconfig, tmp_path):
    """`cp .env.example .env` alone is refused until the secrets are filled in; so is no .env."""
    for env_text in (ENV_EXAMPLE.read_text(), None):
        result = load_with(composeconfig, tmp_path, env_text)
        assert result.returncode != 0
        for name in SECRETS:
            assert f"required variable {name} is missing a value" in result.stderr, result.stderr


def test_env_example_holds_no_secret_and_no_env_is_tracked():
    example = dotenv(ENV_EXAMPLE.read_text())
    secret_like = {name for name in example if SECRET_NAME.search(name)}
    assert secret_like == set(SECRETS), "every secret of .env.example must be in SECRETS (and refused when empty)"
    for name in SECRETS:
        assert example[name] == "", f".env.example gives {name} a value: anyone who copies it shares that secret"
        assert re.search(rf"\$\{{{name}:\?[^}}]*{re.escape(SETUP_HINT)}", COMPOSE.read_text()), \
            f"docker-compose.yml does not refuse an empty {name}"
    git = rig.require("git")
    tracked = subprocess.run([git, "ls-files", "--", ".env", "**/.env"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    assert not tracked, f"tracked by git: {tracked}"
    ignored = subprocess.run([git, "check-ignore", "-q", ".env"], cwd=ROOT)
    assert ignored.returncode == 0, ".gitignore does not leave .env out"


def make_env(where: Path) -> str:
    """Run `make env` in a directory holding a copy of .env.example; the .env it leaves."""
    if not (where / ".env.example").exists():
        where.mkdir(parents=True, exist_ok=True)
        shutil.copy(ENV_EXAMPLE, where / ".env.example")
    subprocess.run([rig.require("make"), "-s", "-C", str(where), "-f", str(ROOT / "Makefile"), "env"],
                   check=True, capture_output=True, timeout=60)
    return (where / ".env").read_text()


def test_make_env_writes_a_working_env_once(composeconfig, tmp_path):
    """`make env`: .env.example with a fresh value for each secret, private, never overwritten."""
    first = make_env(tmp_path / "a")
    written, example = dotenv(first), dotenv(ENV_EXAMPLE.read_text())
    assert (tmp_path / "a" / ".env").stat().st_mode & 0o077 == 0, ".env is readable by others"
    assert {k: v for k, v in written.items() if k not in SECRETS} == {k: v for k, v in example.items() if k not in SECRETS}
    values = {written[name] for name in SECRETS}
    assert len(values) == len(SECRETS) and all(len(v) >= 24 for v in values), values
    assert make_env(tmp_path / "a") == first, "make env overwrote an existing .env"
    assert not values & set(dotenv(make_env(tmp_path / "b")).values()), "make env repeats its secrets"
    assert load_with(composeconfig, tmp_path / "stack", first).returncode == 0


# --- docker-compose.yml --------------------------------------------------------------------------


def test_every_service_of_the_stack_is_defined(services):
    assert set(services) == set(PUBLISHED) | set(INTERNAL) | SCALED | TOOLS


def test_every_promised_port_is_published(services):
    for name, port in PUBLISHED.items():
        published = {(int(p["target"]), int(p["published"])) for p in services[name].get("ports", [])}
        assert (port, port) in published, f"{name} does not publish {port}"


def test_databases_are_not_published_on_the_host(services):
    """MongoDB and Redis have no password: on the host, anyone in the room could flip the mode."""
    for name in INTERNAL:
        assert not services[name].get("ports"), f"{name} publishes {services[name]['ports']}"
        assert services[name].get("network_mode") != "host", name
    # The app reaches them by service name on the compose network.
    env = services["app"]["environment"]
    assert urlsplit(env["MONGO_URL"]).hostname == "mongo" and urlsplit(env["MONGO_URL"]).port == INTERNAL["mongo"]
    assert urlsplit(env["REDIS_URL"]).hostname == "redis" and urlsplit(env["REDIS_URL"]).port == INTERNAL["redis"]


def test_every_service_has_a_healthcheck(services):
    for name, svc in services.items():
        check = svc.get("healthcheck") or {}
        assert not check.get("disable") and check.get("test"), f"{name} has no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_start_order_waits_for_healthy_dependencies(services):
    expected = {"app": {"mongo", "redis", "zipkin"}, "lb": {"app"}, "prometheus": {"app"}, "grafana": {"prometheus"},
                "locust": {"lb"}, "locust-worker": {"locust"}, "rehearse": {"lb"}}
    # Traces are never in a checkout's way: the app starts once Zipkin has started, healthy or not.
    started_only = {("app", "zipkin")}
    for name, deps in expected.items():
        got = services[name].get("depends_on", {})
        assert set(got) == deps, name
        for dep, how in got.items():
            wanted = "service_started" if (name, dep) in started_only else "service_healthy"
            assert how["condition"] == wanted, (name, dep)


def test_images_are_pinned(services):
    for name, svc in services.items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"
    assert services["mongo"]["image"].startswith("mongo:7.")
    assert services["redis"]["image"].startswith("redis:7.")
    # HAProxy 2.6, the LTS Debian bookworm ships, as an exact patch release.
    assert re.fullmatch(r"haproxy:2\.6\.\d+", services["lb"]["image"]), services["lb"]["image"]
    assert services["app"]["build"]["dockerfile"] == "Dockerfile"
    # The Zipkin the tests and `make up` run from its jar (rig.traces pins it).
    assert services["zipkin"]["image"] == f"openzipkin/zipkin:{rig.ZIPKIN_VERSION}"


def test_memory_limits_keep_the_stack_under_2_gib(services):
    total = 0
    for name, svc in services.items():
        if svc.get("profiles"):
            continue  # tools run one at a time with `docker compose run`, not with `up`
        limit = svc.get("deploy", {}).get("resources", {}).get("limits", {}).get("memory")
        assert limit, f"{name} has no memory limit"
        total += int(limit)
    assert total < MEMORY_BUDGET, f"the limits add up to {total / 1024**2:.0f} MiB"
    # The figure the compose file and workshop.md tell the facilitator.
    for doc in (COMPOSE, ROOT / "workshop.md"):
        stated = re.findall(r"add up to (\d+) MiB", doc.read_text())
        assert stated == [str(total // 1024**2)], f"{doc.name} states {stated} MiB, the limits add up to {total // 1024**2}"


def test_locust_workers_scale(services):
    """`--scale locust-worker=N` needs no fixed name and no published port; workers find the master."""
    worker, master = services["locust-worker"], services["locust"]
    assert "container_name" not in worker and not worker.get("ports")
    assert "--worker" in worker["command"] and "--master-host=locust" in worker["command"]
    assert "--master" in master["command"] and "--host=http://lb:8000" in master["command"]


def test_both_locust_services_load_the_workshop_shapes(services):
    for name in ("locust", "locust-worker"):
        locustfiles = [a for a in services[name]["command"] if a.startswith("--locustfile=")]
        assert locustfiles and "loadtest/shapes.py" in locustfiles[0].split("=", 1)[1].split(","), name


def test_rehearse_runs_the_calibration_inside_the_stack_and_writes_the_plan_back(services):
    """`docker compose run --rm rehearse`: a tool (not started by `up`) that may write loadtest/plan.json."""
    rehearse = services["rehearse"]
    assert rehearse["profiles"] == ["tools"]
    assert rehearse["entrypoint"][-2:] == ["-m", "loadtest.calibrate"]
    assert "http://lb:8000" in rehearse["command"]
    mount = next(v for v in rehearse["volumes"] if v["target"] == "/home/locust/loadtest")
    assert Path(mount["source"]) == ROOT / "loadtest" and not mount.get("read_only"), "the plan cannot be written back"
    assert rehearse["environment"]["ADMIN_TOKEN"], "calibration flips the mode: it needs the admin token"


def test_every_mounted_path_exists_in_the_repo(services):
    mounts = 0
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            if volume["type"] != "bind":
                continue
            source = Path(volume["source"])
            assert source.is_relative_to(ROOT), f"{name} mounts {source}, outside the repo"
            assert source.exists(), f"{name} mounts {source.relative_to(ROOT)}, which does not exist"
            mounts += 1
    assert mounts >= 4
    # The files inside the mounts that the services are pointed at by name.
    for path in ("deploy/haproxy/haproxy.cfg", "dashboards/prometheus/prometheus.yml", "dashboards/prometheus/rules",
                 "dashboards/grafana/provisioning/datasources", "dashboards/grafana/provisioning/dashboards",
                 "dashboards/grafana/dashboards/paygate.json", "loadtest/locustfile.py", "loadtest/locust.conf"):
        assert (ROOT / path).exists(), f"{path} is missing"


def test_services_point_at_files_inside_their_mounts(services):
    """Paths in commands and settings resolve through a mount to a file in the repo."""

    def host_path(svc, container_path):
        for volume in svc.get("volumes", []):
            target = volume["target"].rstrip("/")
            if volume["type"] == "bind" and (container_path == target or container_path.startswith(target + "/")):
                return Path(volume["source"]) / container_path[len(target):].lstrip("/")
        return None

    prom = services["prometheus"]
    config = next(a.split("=", 1)[1] for a in prom["command"] if a.startswith("--config.file="))
    assert host_path(prom, config).is_file()
    grafana = services["grafana"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path(grafana, home).is_file()
    for locust in (services["locust"], services["locust-worker"]):
        for arg in locust["command"]:
            if arg.startswith(("--locustfile=", "--config=")):
                for name in arg.split("=", 1)[1].split(","):  # --locustfile takes a list
                    in_container = str(Path(locust["working_dir"]) / name)
                    assert host_path(locust, in_container).is_file(), arg


def test_prometheus_finds_its_rules_through_the_mount(services):
    """promtool loads the mounted config and the rule files it names relative to itself."""
    prom = services["prometheus"]
    volume = next(v for v in prom["volumes"] if v["target"] == "/etc/prometheus")
    result = subprocess.run([rig.require("promtool"), "check", "config", str(Path(volume["source"]) / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"SUCCESS: [1-9]\d* rules found", result.stdout), result.stdout


def test_mounted_configs_address_services_of_the_stack(services):
    """Prometheus finds every app replica by its compose name (DNS, not a fixed target), and
    Grafana's datasource is Prometheus."""
    prom = yaml.safe_load((ROOT / "dashboards/prometheus/prometheus.yml").read_text())
    [job] = prom["scrape_configs"]
    assert job["job_name"] == "paygate" and "static_configs" not in job, job
    # Type A: one address per replica, each scraped directly (not through the balancer).
    assert [(sd["names"], sd["type"], sd["port"]) for sd in job["dns_sd_configs"]] == [(["app"], "A", APP_PORT)]
    assert services["app"]["environment"]["BIND"].endswith(f":{APP_PORT}")
    assert int(job["dns_sd_configs"][0]["refresh_interval"].removesuffix("s")) <= 10, "replicas found too late"
    for source in (ROOT / "dashboards/grafana/provisioning/datasources").glob("*.y*ml"):
        for ds in yaml.safe_load(source.read_text()).get("datasources", []):
            url = urlsplit(ds["url"])
            assert url.hostname in services and url.port == PUBLISHED[url.hostname], ds["url"]


def test_grafana_is_anonymous_viewer_with_the_dashboard_as_home(services):
    env = services["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert env["GF_ANALYTICS_CHECK_FOR_UPDATES"] == "false"
    assert env["GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES"] == "false"
    assert env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].endswith("/paygate.json")


def test_app_gets_every_environment_name_it_reads(services):
    names = app_env_names()
    # The scan must find what config.py is known to read, or it proves nothing.
    assert {"MONGO_URL", "REDIS_URL", "ADMIN_TOKEN", "WEB_CONCURRENCY", "BIND"} <= names
    env = services["app"]["environment"]
    # Read only when no MONGO_URL is set (the embedded store of `make up`); compose sets MONGO_URL.
    missing = sorted(names - set(env) - {"PAYGATE_SQLITE_PATH"})
    assert not missing, f"docker-compose.yml does not give the app {missing}"
    for name in REQUIRED_ENV:
        assert env[name], f"{name} is empty"


def test_app_environment_is_valid_and_uses_the_real_backends(services):
    """The app's own config check accepts the values, and nothing falls back to a stand-in."""
    env = services["app"]["environment"]
    settings = load_settings(env=env)
    assert not settings.embedded
    assert settings.mongo_url.startswith("mongodb://mongo:")
    assert settings.redis_url.startswith("redis://redis:")
    assert settings.admin_token == env["ADMIN_TOKEN"]
    assert int(env["WEB_CONCURRENCY"]) >= 2, "the full stack runs several workers"
    assert env["BIND"].endswith(":8000")


def test_values_live_in_env_example_and_the_compose_file_names_them():
    text = COMPOSE.read_text()
    example = dotenv(ENV_EXAMPLE.read_text())
    for name in REQUIRED_ENV + ("GRAFANA_ADMIN_PASSWORD",):
        assert name in example, f".env.example does not name {name}"
        if name in SECRETS:
            continue
        assert example[name], f".env.example has no value for {name}"
        value = re.escape(example[name])
        assert not re.search(rf"""(?m)[:=]\s*["']?{value}["']?\s*$""", text), f"{name}'s value is written in docker-compose.yml"
    # Every ${NAME} in the compose file is named in .env.example.
    for name in set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text)):
        assert name in example, f"${{{name}}} is not in .env.example"


# --- the app's replicas behind the load balancer ----------------------------------------------------


def scaled(compose_text: str, replicas: int, extra: str = "") -> str:
    """The compose file with `scale: N` (what `docker compose up --scale app=N` sets) and `extra` on app."""
    head = "  app:\n    build: .\n"
    assert compose_text.count(head) == 1
    return compose_text.replace(head, f"{head}    scale: {replicas}\n{extra}")


def test_the_project_loads_with_app_scaled_to_3(composeconfig, tmp_path):
    """The loader's consistency checks pass with three replicas; the same checks refuse a fixed
    container name (so they are real), and nothing published collides."""
    result = load_with(composeconfig, tmp_path, env_file(), scaled(COMPOSE.read_text(), 3))
    assert result.returncode == 0, result.stderr
    app = json.loads(result.stdout)["services"]["app"]
    assert app["scale"] == 3 and app["deploy"]["replicas"] == 3
    assert not app.get("ports"), "three replicas cannot publish the same host port"
    named = load_with(composeconfig, tmp_path, env_file(), scaled(COMPOSE.read_text(), 3, "    container_name: paygate-app\n"))
    assert named.returncode != 0 and "container name must be unique" in named.stderr, named.stderr


def test_services_that_scale_have_no_fixed_name_and_no_published_port(services):
    for name in SCALED:
        assert "container_name" not in services[name] and not services[name].get("ports"), name
        assert services[name].get("network_mode") != "host", name


def test_the_room_reaches_the_app_only_through_the_balancer(services):
    """lb publishes 8000 and runs deploy/haproxy/haproxy.cfg; Locust and rehearse go through it."""
    lb = services["lb"]
    assert {(int(p["target"]), int(p["published"])) for p in lb["ports"]} == {(APP_PORT, APP_PORT)}
    mount = next(v for v in lb["volumes"] if v["target"] == "/usr/local/etc/haproxy")
    assert Path(mount["source"]) == HAPROXY_DIR and mount["read_only"], mount
    # The image's default command reads /usr/local/etc/haproxy/haproxy.cfg: lb sets none of its own.
    assert not lb.get("command") and not lb.get("entrypoint")
    cfg = (HAPROXY_DIR / "haproxy.cfg").read_text()
    bind = re.search(r'^\s*bind\s+"\$\{(\w+)\}"', cfg, re.M)
    assert bind and lb["environment"][bind.group(1)] == f":{APP_PORT}", "the balancer listens where it publishes"
    # Its servers are the replicas by the app's compose name, on the app's port.
    assert re.search(rf"^\s*server-template\s+\S+\s+\d+\s+app:{APP_PORT}\s", cfg, re.M), "lb does not balance over app"
    hosts = [a for a in services["locust"]["command"] if a.startswith("--host=")]
    hosts += [services["rehearse"]["command"][services["rehearse"]["command"].index("--host") + 1]]
    assert all(urlsplit(h.split("=", 1)[-1]).netloc == f"lb:{APP_PORT}" for h in hosts), hosts


def lb_healthcheck(services, port: int) -> list[str]:
    """lb's healthcheck command, as compose resolved it, asking `port` instead of the balancer's 8000."""
    check = services["lb"]["healthcheck"]["test"]
    assert check[:3] == ["CMD", "bash", "-c"] and f"/dev/tcp/127.0.0.1/{APP_PORT}" in check[3]
    assert "GET /health HTTP/1." in check[3], "an HTTP check of the app through the balancer, not a port check"
    return ["bash", "-c", check[3].replace(f"/dev/tcp/127.0.0.1/{APP_PORT}", f"/dev/tcp/127.0.0.1/{port}")]


def test_lb_healthcheck_asks_http_and_passes_only_on_a_200(services, live):
    """The haproxy image has bash but neither curl nor wget: its check speaks HTTP over /dev/tcp.
    It passes against the app's /health (what a replica answers through lb), fails on an answer
    that is not 200 (HAProxy's 503 with no replica in rotation) and with nothing listening."""
    ok = subprocess.run(lb_healthcheck(services, live.service.port), capture_output=True, timeout=10)
    assert ok.returncode == 0, ok.stderr
    not_200 = lb_healthcheck(services, live.service.port)
    not_200[2] = not_200[2].replace("GET /health ", "GET /no-such-page ")
    assert subprocess.run(not_200, capture_output=True, timeout=10).returncode != 0
    down = subprocess.run(lb_healthcheck(services, rig.free_port()), capture_output=True, timeout=10)
    assert down.returncode != 0


class Replica(BaseHTTPRequestHandler):
    """A stand-in replica whose /health answers `server.status`."""

    def do_GET(self):
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_lb_healthcheck_through_haproxy_follows_the_replicas(services, tmp_path):
    """Through HAProxy 2.6 running deploy/haproxy/haproxy.cfg (the test rig's, servers on loopback):
    healthy while a replica answers /health; unhealthy once HAProxy has taken the last one out of
    rotation and answers 503 itself."""
    from rig.replicas import haproxy  # the compose file's config, its servers block on loopback

    replica = ThreadingHTTPServer(("127.0.0.1", 0), Replica)
    replica.status = 200
    threading.Thread(target=replica.serve_forever, daemon=True).start()
    lb = haproxy(tmp_path / "lb", [replica.server_address[1]]).start()
    try:
        check = lb_healthcheck(services, lb.port)
        assert subprocess.run(check, capture_output=True, timeout=10).returncode == 0
        replica.status = 500  # failing its health checks: HAProxy takes it out within about 2 s
        assert poll_until(lambda: requests.get(f"http://127.0.0.1:{lb.port}/health", timeout=5).status_code == 503,
                          timeout=10, every=0.25), "HAProxy kept a failing replica in rotation"
        assert subprocess.run(check, capture_output=True, timeout=10).returncode != 0, "lb healthy with no replica"
    finally:
        lb.stop()
        replica.shutdown()
        replica.server_close()


# --- Dockerfile ---------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or rig.require("hadolint")
    result = subprocess.run([hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_house_rules():
    """What hadolint does not insist on: pinned slim base, non-root, HEALTHCHECK, our gunicorn config."""
    ins = dockerfile_instructions()
    froms = [args for word, args in ins if word == "FROM"]
    assert len(froms) == 1 and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", froms[0]), froms
    users = [args for word, args in ins if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert [word for word, _ in ins].count("HEALTHCHECK") == 1
    health = next(args for word, args in ins if word == "HEALTHCHECK")
    assert "/health" in health and "curl" not in health
    assert not any(word == "ADD" for word, _ in ins), "COPY, never ADD (no remote URLs, no auto-extraction)"
    for word, args in ins:
        if word == "RUN" and "pip install" in args:
            assert "--no-cache-dir" in args
    cmd = next(args for word, args in ins if word == "CMD")
    assert "gunicorn" in cmd and "gunicorn.conf.py" in cmd
    assert any(word == "ENV" and "PROMETHEUS_MULTIPROC_DIR=/tmp/" in args for word, args in ins)
    for word, args in ins:
        if word == "COPY":
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repo"


def test_image_dependencies_are_pinned():
    """The image installs [project] dependencies from pyproject.toml: each must be an exact pin."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert deps and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", d) for d in deps), deps


def test_build_context_leaves_out_secrets_and_local_state():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".env", ".venv", ".git", ".cache"} <= ignored
    for word, args in dockerfile_instructions():
        if word == "COPY":
            for source in args.split()[:-1]:
                assert source not in ignored, f"COPY {source}, but .dockerignore leaves it out"


def healthcheck_argv() -> list[str]:
    """The Dockerfile's HEALTHCHECK command, with this machine's Python."""
    health = next(args for word, args in dockerfile_instructions() if word == "HEALTHCHECK")
    argv = json.loads(health[health.index("CMD") + 3:].strip())
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


def test_dockerfile_healthcheck_probes_the_running_app(live):
    """The HEALTHCHECK passes against gunicorn on real Redis and MongoDB-wire, and fails with nothing there."""
    assert requests.get(live.url + "/health", timeout=5).status_code == 200
    argv = healthcheck_argv()
    ok = subprocess.run(argv, env={"BIND": f"0.0.0.0:{live.service.port}"}, capture_output=True, timeout=10)
    assert ok.returncode == 0, ok.stderr
    down = subprocess.run(argv, env={"BIND": f"0.0.0.0:{rig.free_port()}"}, capture_output=True, timeout=10)
    assert down.returncode != 0


# --- traces: Zipkin ------------------------------------------------------------------------------


def test_zipkin_keeps_traces_in_capped_memory(services):
    """In-memory storage, at most MEM_MAX_SPANS spans, a fixed heap well inside the container's limit."""
    zipkin = services["zipkin"]
    env = zipkin["environment"]
    assert env["STORAGE_TYPE"] == "mem" and int(env["MEM_MAX_SPANS"]) > 0
    heap = re.search(r"-Xmx(\d+)m", env["JAVA_OPTS"])
    assert heap and f"-Xms{heap.group(1)}m" in env["JAVA_OPTS"], env["JAVA_OPTS"]
    limit_mib = int(zipkin["deploy"]["resources"]["limits"]["memory"]) // 1024**2
    # The JVM's own code and metadata sit beside the heap: the heap may take at most half the limit.
    assert int(heap.group(1)) <= limit_mib // 2, (heap.group(1), limit_mib)
    assert "-XX:+ExitOnOutOfMemoryError" in env["JAVA_OPTS"], "a full heap restarts Zipkin, never wedges it"


def test_the_app_sends_spans_to_zipkin_and_links_to_the_published_ui(services):
    env = services["app"]["environment"]
    endpoint = urlsplit(env["OTEL_EXPORTER_ZIPKIN_ENDPOINT"])
    assert (endpoint.scheme, endpoint.hostname, endpoint.port, endpoint.path) == ("http", "zipkin", 9411, "/api/v2/spans")
    ui = urlsplit(env["TRACES_UI_URL"])
    assert ui.port == PUBLISHED["zipkin"] and ui.path == "/zipkin/", env["TRACES_UI_URL"]
    assert env["TRACES_UI_URL"] == dotenv(ENV_EXAMPLE.read_text())["TRACES_UI_URL"]
    settings = load_settings(env=env)
    assert settings.tracing and settings.service_name == "paygate", "the service the dashboard's trace links search"


def zipkin_healthcheck(services, port: int) -> list[str]:
    """Zipkin's healthcheck command, as compose resolved it, asking loopback's `port` instead of 9411."""
    check = services["zipkin"]["healthcheck"]["test"]
    assert check[0] == "CMD" and check[1] == "wget", check
    url = check[-1]
    assert url == "http://127.0.0.1:9411/health", "Zipkin's own health, not a port check"
    return [rig.require("wget"), *check[2:-1], url.replace(":9411/", f":{port}/")]


class ZipkinDown(BaseHTTPRequestHandler):
    """Zipkin's answer while its storage is down: 503 with status DOWN."""

    def do_GET(self):
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "DOWN"}')

    def log_message(self, *args):
        pass


def test_zipkin_healthcheck_passes_on_an_up_zipkin_only(services, zipkin):
    """The compose healthcheck against the rig's real Zipkin (the same version, from its jar) passes; it
    fails on Zipkin's DOWN answer and with nothing listening."""
    ok = subprocess.run(zipkin_healthcheck(services, zipkin.port), capture_output=True, text=True, timeout=10)
    assert ok.returncode == 0, ok.stderr
    down = ThreadingHTTPServer(("127.0.0.1", 0), ZipkinDown)
    threading.Thread(target=down.serve_forever, daemon=True).start()
    try:
        check = zipkin_healthcheck(services, down.server_address[1])
        assert subprocess.run(check, capture_output=True, timeout=10).returncode != 0
    finally:
        down.shutdown()
        down.server_close()
    assert subprocess.run(zipkin_healthcheck(services, rig.free_port()), capture_output=True, timeout=10).returncode != 0
