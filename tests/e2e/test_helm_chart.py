"""The Helm chart in deploy/helm/switchyard, rendered by a real helm for every values file in its ci/ folder.

Every manifest must pass Kubernetes' own JSON schemas (strict: an unknown field fails), and the pod must keep the
sidecar's contract: native gRPC probes on the gRPC port, a hardened non-root container, a ConfigMap that is a
valid Switchyard config and is mounted as a directory so the traffic split hot-reloads.

helm comes from scripts/ensure-helm.sh (scripts/test.sh runs it); HELM=/path/to/helm overrides it. Without a
helm these tests fail: a chart nobody renders is a chart nobody tested.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from proxy.app.config import SwitchyardConfig, parse_config

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "switchyard"
CI_VALUES = sorted(path.name for path in (CHART / "ci").glob("*-values.yaml"))
RELEASE = "search"
FULLNAME = "search-switchyard"
OLDEST_KUBERNETES = "1.29"  # Chart.yaml kubeVersion
KUBERNETES_VERSIONS = (OLDEST_KUBERNETES, kubernetes_validate.latest_version())
GRPC_HEALTH_PROBE = {"grpc": {"port": 50051, "service": ""}}

Manifest = dict[str, Any]


@functools.cache
def helm_binary() -> str:
    if explicit := os.environ.get("HELM"):
        if not os.access(explicit, os.X_OK):
            pytest.fail(f"HELM={explicit} is not an executable file")
        return explicit
    for candidate in (str(REPO / ".venv" / "bin" / "helm"), shutil.which("helm")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "no helm binary: run scripts/ensure-helm.sh (a pinned helm into .venv/bin) or set HELM=/path/to/helm"
    )


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=60, check=False)


@functools.cache
def render(*args: str) -> tuple[Manifest, ...]:
    """`helm template` with extra arguments (-f FILE, --set K=V); the manifests, parsed."""
    result = run_helm(
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        "search",
        "--kube-version",
        f"v{OLDEST_KUBERNETES}.0",
        *args,
    )
    if result.returncode != 0:
        pytest.fail(f"helm template {' '.join(args)} failed:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render_ci(values_file: str, *args: str) -> tuple[Manifest, ...]:
    return render("--values", str(CHART / "ci" / values_file), *args)


def render_error(*args: str) -> str:
    result = run_helm("template", RELEASE, str(CHART), *args)
    assert result.returncode != 0, f"helm template {' '.join(args)} should have failed"
    return result.stderr


def the(manifests: tuple[Manifest, ...], kind: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
    return found[0]


def kinds(manifests: tuple[Manifest, ...]) -> list[str]:
    return sorted(m["kind"] for m in manifests)


def pod_spec(manifests: tuple[Manifest, ...]) -> Manifest:
    return the(manifests, "Deployment")["spec"]["template"]["spec"]


def switchyard_container(manifests: tuple[Manifest, ...]) -> Manifest:
    spec = pod_spec(manifests)
    found = [c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == "switchyard"]
    assert len(found) == 1
    return found[0]


def switchyard_config(manifests: tuple[Manifest, ...]) -> SwitchyardConfig:
    text = the(manifests, "ConfigMap")["data"]["switchyard.yaml"]
    return parse_config(yaml.safe_load(text), "rendered ConfigMap")


def restart_checksum(*args: str) -> str:
    template = the(render("--set", "restartOnConfigChange=true", *args), "Deployment")["spec"]["template"]
    return template["metadata"]["annotations"]["checksum/config"]


@pytest.mark.parametrize("values_file", CI_VALUES)
def test_chart_passes_helm_lint_strict(values_file: str) -> None:
    result = run_helm("lint", "--strict", str(CHART), "--values", str(CHART / "ci" / values_file))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values_file", CI_VALUES)
def test_rendered_manifests_pass_the_kubernetes_schemas(values_file: str) -> None:
    problems = []
    for manifest in render_ci(values_file):
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(manifest, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                problems.append(f"{manifest['kind']} (k8s {version}) at {exc.json_path}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(
                    f"{manifest['apiVersion']} {manifest['kind']}: no schema in Kubernetes {version}"
                )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("values_file", CI_VALUES)
def test_config_map_is_a_valid_switchyard_config(values_file: str) -> None:
    config = switchyard_config(render_ci(values_file))
    assert config.server.listen == "0.0.0.0:50051"
    assert config.data_dir == Path("/var/lib/switchyard")


@pytest.mark.parametrize("values_file", CI_VALUES)
def test_probes_are_native_grpc_health_checks_on_the_grpc_port(values_file: str) -> None:
    container = switchyard_container(render_ci(values_file))
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert {"grpc": container[probe]["grpc"]} == GRPC_HEALTH_PROBE, probe
    assert {"name": "grpc", "containerPort": 50051, "protocol": "TCP"} in container["ports"]


def test_a_new_grpc_port_moves_the_listener_the_probes_and_the_service_together() -> None:
    manifests = render("--set", "grpc.port=6000")
    container = switchyard_container(manifests)
    assert container["livenessProbe"]["grpc"] == {"port": 6000, "service": ""}
    assert container["readinessProbe"]["grpc"] == {"port": 6000, "service": ""}
    assert {"name": "grpc", "containerPort": 6000, "protocol": "TCP"} in container["ports"]
    assert switchyard_config(manifests).server.listen == "0.0.0.0:6000"
    grpc_port = the(manifests, "Service")["spec"]["ports"][0]
    assert (grpc_port["port"], grpc_port["targetPort"]) == (50051, "grpc")


@pytest.mark.parametrize("values_file", CI_VALUES)
def test_switchyard_runs_non_root_on_a_read_only_root_filesystem(values_file: str) -> None:
    container = switchyard_container(render_ci(values_file))
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    writable = {mount["mountPath"] for mount in container["volumeMounts"] if not mount.get("readOnly")}
    assert writable == {"/var/lib/switchyard", "/tmp"}


@pytest.mark.parametrize("values_file", CI_VALUES)
def test_config_map_is_mounted_as_a_directory_so_updates_reach_the_pod(values_file: str) -> None:
    manifests = render_ci(values_file)
    container = switchyard_container(manifests)
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
    assert mount == {"name": "config", "mountPath": "/etc/switchyard", "readOnly": True}
    assert container["args"][-2:] == ["--config", "/etc/switchyard/switchyard.yaml"]
    (volume,) = [v for v in pod_spec(manifests)["volumes"] if v["name"] == "config"]
    assert volume["configMap"]["name"] == the(manifests, "ConfigMap")["metadata"]["name"] == FULLNAME


def test_standalone_mode_serves_grpc_and_metrics_through_a_cluster_ip_service() -> None:
    manifests = render_ci("default-values.yaml")
    assert kinds(manifests) == ["ConfigMap", "Deployment", "Service"]
    service = the(manifests, "Service")
    assert service["spec"]["type"] == "ClusterIP"
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {"grpc": (50051, "grpc"), "metrics": (9464, "metrics")}
    container_ports = switchyard_container(manifests)["ports"]
    assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in container_ports
    assert [c["name"] for c in pod_spec(manifests)["containers"]] == ["switchyard"]


def test_sidecar_mode_runs_the_app_next_to_the_proxy_and_points_it_at_localhost() -> None:
    manifests = render_ci("sidecar-values.yaml")
    assert "Service" not in kinds(manifests)
    spec = pod_spec(manifests)
    assert [c["name"] for c in spec["containers"]] == ["search-api", "switchyard"]
    app = spec["containers"][0]
    assert app["image"] == "registry.example.com/search-api:1.4.2"
    assert {"name": "SWITCHYARD_ADDR", "value": "127.0.0.1:50051"} in app["env"]
    assert {"name": "LOG_LEVEL", "value": "info"} in app["env"]
    assert app["securityContext"]["runAsUser"] == 20000, "the app keeps its own security context"
    assert "initContainers" not in spec


def test_native_sidecar_starts_switchyard_as_a_restartable_init_container() -> None:
    spec = pod_spec(render_ci("sidecar-native-values.yaml"))
    assert [c["name"] for c in spec["containers"]] == ["app"]
    (init,) = spec["initContainers"]
    assert (init["name"], init["restartPolicy"]) == ("switchyard", "Always")
    assert init["startupProbe"]["grpc"] == {"port": 50051, "service": ""}


def test_redis_url_switches_the_state_backend_to_redis() -> None:
    config = switchyard_config(render_ci("redis-pvc-values.yaml"))
    assert config.state.backend == "redis"
    assert config.state.redis_url == "redis://redis-master.data.svc:6379/2"
    assert config.state.namespace == "search-prod"
    assert switchyard_config(render_ci("default-values.yaml")).state.backend == "local"


def test_persistence_puts_data_dir_on_a_claim_and_recreates_the_pod() -> None:
    manifests = render_ci("redis-pvc-values.yaml")
    claim = the(manifests, "PersistentVolumeClaim")
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    (data,) = [v for v in pod_spec(manifests)["volumes"] if v["name"] == "data"]
    assert data == {"name": "data", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}}
    assert the(manifests, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert the(manifests, "ServiceAccount")["metadata"]["name"] == pod_spec(manifests)["serviceAccountName"]


def test_without_persistence_data_dir_is_an_empty_dir() -> None:
    manifests = render_ci("default-values.yaml")
    (data,) = [v for v in pod_spec(manifests)["volumes"] if v["name"] == "data"]
    assert data == {"name": "data", "emptyDir": {}}
    assert "strategy" not in the(manifests, "Deployment")["spec"]


def test_migration_values_land_in_the_config() -> None:
    config = switchyard_config(render_ci("migration-values.yaml"))
    assert config.migration is not None
    assert (config.migration.old_index, config.migration.new_index) == ("docs-v1", "docs-v2")
    assert config.migration.backfill.rate_limit == 500
    assert config.query.traffic_percent == 25
    assert config.query.merge == "rrf"
    assert switchyard_config(render_ci("default-values.yaml")).migration is None


def test_the_default_values_are_one_collection_named_default() -> None:
    config = switchyard_config(render_ci("default-values.yaml"))
    assert config.collections is None and config.default_collection is None
    assert [(c.name, c.serving_index) for c in config.collection_list()] == [("default", "docs-v1")]


def test_two_collections_values_render_a_config_with_two_collections() -> None:
    config = switchyard_config(render_ci("collections-values.yaml"))
    assert config.serving_index is None and config.migration is None, "the one-collection keys are left out"
    collections = {c.name: c for c in config.collection_list()}
    assert sorted(collections) == ["articles", "products"]
    assert config.default_collection_name() == "products"
    articles, products = collections["articles"], collections["products"]
    assert (articles.serving_index, articles.migration) == ("docs-v1", None)
    assert articles.query == config.query, "a collection without a query section uses the top-level one"
    assert products.serving_index == "products-v1" and products.migration is not None
    assert (products.migration.old_index, products.migration.new_index) == ("products-v1", "products-v2")
    assert products.migration.backfill.rate_limit == 200
    assert (products.query.merge, products.query.traffic_percent) == ("rrf", 10)


def test_collections_set_on_the_command_line_replace_the_one_collection_form() -> None:
    manifests = render(
        "--set",
        "config.collections.articles.serving_index=docs-v1",
        "--set",
        "config.collections.articles.query.traffic_percent=12.5",
    )
    config = switchyard_config(manifests)
    assert [(c.name, c.serving_index) for c in config.collection_list()] == [("articles", "docs-v1")]
    assert config.default_collection_name() == "articles"
    rendered = yaml.safe_load(the(manifests, "ConfigMap")["data"]["switchyard.yaml"])
    assert "serving_index" not in rendered and "default_collection" not in rendered
    assert rendered["collections"]["articles"]["query"]["traffic_percent"] == 12.5


def test_a_traffic_split_set_on_the_command_line_is_a_number() -> None:
    text = the(render("--set", "config.query.traffic_percent=12.5"), "ConfigMap")["data"]["switchyard.yaml"]
    assert yaml.safe_load(text)["query"]["traffic_percent"] == 12.5


def test_checksum_annotation_is_present_only_when_restart_on_config_change_is_on() -> None:
    default_pod = the(render_ci("default-values.yaml"), "Deployment")["spec"]["template"]
    assert "annotations" not in default_pod["metadata"]
    migration_pod = the(render_ci("migration-values.yaml"), "Deployment")["spec"]["template"]
    assert re.fullmatch(r"[0-9a-f]{64}", migration_pod["metadata"]["annotations"]["checksum/config"])
    assert migration_pod["metadata"]["annotations"]["team"] == "search"


def test_hot_reloaded_settings_do_not_roll_the_pods_but_restart_only_ones_do() -> None:
    baseline = restart_checksum()
    assert restart_checksum("--set", "config.query.traffic_percent=50") == baseline
    assert restart_checksum("--set", "config.query.merge=zscore") == baseline
    assert restart_checksum("--set", "config.models.hash-v1.seed=7") != baseline
    assert restart_checksum("--set", "redis.url=redis://redis:6379/0") != baseline
    migration = ("--values", str(CHART / "ci" / "migration-values.yaml"))
    with_migration = restart_checksum(*migration)
    for hot in ("rate_limit=20", "latency_budget_ms=7.5", "batch_time_ms=50"):
        assert restart_checksum(*migration, "--set", f"config.migration.backfill.{hot}") == with_migration
    assert restart_checksum(*migration, "--set", "config.migration.backfill.batch_size=7") != with_migration


def test_a_collections_hot_reloaded_settings_do_not_roll_the_pods_but_restart_only_ones_do() -> None:
    collections = ("--values", str(CHART / "ci" / "collections-values.yaml"))
    baseline = restart_checksum(*collections)
    hot = (
        "query.traffic_percent=50",
        "query.merge=zscore",
        "query.shadow_sample_rate=0.1",
        "migration.backfill.rate_limit=20",
        "migration.backfill.latency_budget_ms=7.5",
        "migration.backfill.batch_time_ms=50",
    )
    for setting in hot:
        assert restart_checksum(*collections, "--set", f"config.collections.products.{setting}") == baseline
    for restart_only in (
        "collections.products.migration.backfill.batch_size=7",
        "collections.articles.query.new_path=new",
        "default_collection=articles",
    ):
        assert restart_checksum(*collections, "--set", f"config.{restart_only}") != baseline


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "mode=daemonset"], 'mode must be "standalone" or "sidecar"'),
        (["--set", "mode=sidecar"], "app.image is required"),
        (
            ["--set", "persistence.enabled=true", "--set", "replicaCount=2"],
            "persistence.enabled needs replicaCount 1",
        ),
        (
            ["--set", "config.collections.a.serving_index=docs-v1", "--set", "config.migration.old_index=x"],
            "config.migration must be empty when config.collections is set",
        ),
        (
            ["--set", "config.collections.a.query.merge=rrf"],
            "config.collections.a.serving_index is required",
        ),
    ],
)
def test_broken_values_fail_naming_the_value_to_fix(args: list[str], message: str) -> None:
    assert message in render_error(*args)


def test_every_value_is_documented() -> None:
    """A key in values.yaml needs a comment right above it or on its line (list items and flow maps aside)."""
    undocumented = []
    previous = ""
    for number, line in enumerate((CHART / "values.yaml").read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if re.match(r"[A-Za-z0-9_.-]+:", stripped) and "#" not in line and not previous.startswith("#"):
            undocumented.append(f"values.yaml:{number}: {stripped}")
        previous = stripped
    assert not undocumented, "\n".join(undocumented)


def test_image_and_chart_agree_on_user_ports_and_config_path() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    user = values["securityContext"]["runAsUser"]
    assert re.search(rf"^USER {user}:{values['securityContext']['runAsGroup']}$", dockerfile, re.M)
    assert re.search(rf"^EXPOSE {values['grpc']['port']} {values['metrics']['port']}$", dockerfile, re.M)
    assert 'CMD ["serve", "--config", "/etc/switchyard/switchyard.yaml"]' in dockerfile
    assert 'ENTRYPOINT ["switchyard"]' in dockerfile


def test_metrics_endpoint_listens_on_the_metrics_port_and_otlp_is_optional() -> None:
    config = switchyard_config(render("--set", "metrics.port=9999"))
    assert config.telemetry.metrics_listen == "0.0.0.0:9999" and config.telemetry.otlp_endpoint is None
    pushed = switchyard_config(render("--set", "metrics.otlpEndpoint=http://collector:4317"))
    assert pushed.telemetry.otlp_endpoint == "http://collector:4317"
