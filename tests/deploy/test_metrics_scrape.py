"""Scrape configuration (issue 13 item 4): the Prometheus configs for compose, one machine and
the embedded platform are valid and name the services where they really listen; the Kubernetes
pods carry scrape annotations and the ServiceMonitor selects their Services; and a real
Prometheus (Debian's package) scraping the embedded platform's root /metrics gets all four
services' series with no duplicate-series error."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deployments import SERVICES, embedded_deployment, free_port
from watchkeeper.real import RealOptions

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
JOB = "watchkeeper"
CONFIGS = ("prometheus.yml", "prometheus-local.yml", "prometheus-embedded.yml")
WAIT_S = 60.0


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: `make system-deps` installs Debian's prometheus package")
    return found


def parse(text: str) -> dict[str, float]:
    """Unlabelled samples of an exposition, by name."""
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def targets(config: dict[str, Any]) -> dict[str, str]:
    """target → its component label, of the single `watchkeeper` job."""
    [job] = config["scrape_configs"]
    assert job["job_name"] == JOB  # the WatchkeeperServiceDown rule selects up{job=...}
    assert job.get("metrics_path", "/metrics") == "/metrics"
    return {
        target: group["labels"]["component"]
        for group in job["static_configs"]
        for target in group["targets"]
    }


@pytest.mark.parametrize("name", CONFIGS)
def test_scrape_configs_are_valid(name: str) -> None:
    result = subprocess.run(
        [tool("promtool"), "check", "config", name],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_config_scrapes_each_service_where_it_listens() -> None:
    compose = load(DEPLOY / "compose.yaml")["services"]
    expected = {
        f"{name}:{compose[name]['environment'][f'WK_{name.upper()}_PORT']}": name
        for name in SERVICES
    }
    assert targets(load(PROMETHEUS / "prometheus.yml")) == expected
    # the whole directory is mounted: prometheus.yml and the rules/*.yml it loads
    volumes = compose["prometheus"]["volumes"]
    assert "./prometheus:/etc/prometheus:ro" in volumes
    assert "--config.file=/etc/prometheus/prometheus.yml" in compose["prometheus"]["command"]


def test_local_config_scrapes_the_ports_of_make_up_real() -> None:
    options = RealOptions()
    expected = {f"127.0.0.1:{options.port(name)}": name for name in SERVICES}
    assert targets(load(PROMETHEUS / "prometheus-local.yml")) == expected


def test_kubernetes_pods_and_services_are_scraped() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes/services.yaml").read_text()))
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert set(deployments) == set(services) == set(SERVICES)
    monitor = load(DEPLOY / "kubernetes/monitoring/servicemonitor.yaml")
    assert monitor["kind"] == "ServiceMonitor"
    selector = monitor["spec"]["selector"]["matchLabels"]
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["honorLabels"] is True  # the series' own `service` label wins
    for name in SERVICES:
        template = deployments[name]["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        [container] = template["spec"]["containers"]
        [port] = container["ports"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        assert int(annotations["prometheus.io/port"]) == port["containerPort"]
        service = services[name]
        labels = service["metadata"]["labels"]
        assert selector.items() <= labels.items(), name
        assert labels[monitor["spec"]["jobLabel"]] == JOB  # job="watchkeeper"
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    kustomization = load(DEPLOY / "kubernetes/monitoring/kustomization.yaml")
    assert kustomization["resources"] == ["../", "servicemonitor.yaml"]


@contextlib.contextmanager
def running_prometheus(tmp_path: Path, target: str) -> Iterator[str]:
    """Debian's Prometheus with prometheus-embedded.yml, scraping ``target`` every second."""
    config = load(PROMETHEUS / "prometheus-embedded.yml")
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config.pop("rule_files")  # the rules have their own tests (tests/deploy/test_prometheus.py)
    [job] = config["scrape_configs"]
    job["static_configs"][0]["targets"] = [target]
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def test_real_prometheus_scrapes_the_embedded_root_without_duplicate_series(
    tmp_path: Path,
) -> None:
    async with embedded_deployment(tmp_path) as deployment, httpx.AsyncClient(timeout=10) as client:
        root = deployment.urls["registry"].removesuffix("/registry")
        for name in SERVICES:  # a request to each service: HTTP series under all four
            await client.get(deployment.url(name, "/readyz"))
        # each series once in the exposition (Prometheus keeps the first of two with the same
        # labels and value without a word, so this is checked on the text itself)
        text = (await client.get(f"{root}/metrics")).text
        keys = [
            (sample.name, tuple(sorted(sample.labels.items())))
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]
        assert len(keys) == len(set(keys)), {k for k in keys if keys.count(k) > 1}
        with running_prometheus(tmp_path, root.removeprefix("http://")) as prometheus:

            async def query(expr: str) -> list[dict[str, Any]]:
                response = await client.get(f"{prometheus}/api/v1/query", params={"query": expr})
                assert response.status_code == 200, response.text
                result: list[dict[str, Any]] = response.json()["data"]["result"]
                return result

            deadline = time.monotonic() + WAIT_S
            target: dict[str, Any] = {}
            while True:
                with contextlib.suppress(httpx.TransportError):
                    response = await client.get(f"{prometheus}/api/v1/targets")
                    [target] = response.json()["data"]["activeTargets"] or [{}]
                    scraped = await query("watchkeeper_http_requests_total")
                    if target.get("health") == "up" and scraped:
                        break
                assert time.monotonic() < deadline, f"target never up: {target}"
                await asyncio.sleep(0.5)
            assert target["lastError"] == "", target
            assert target["labels"]["component"] == "embedded"
            await asyncio.sleep(2.5)  # a few more scrapes
            by_service = await query("count by (service) (watchkeeper_http_requests_total)")
            assert {r["metric"]["service"] for r in by_service} == set(SERVICES)
            assert len(await query("process_resident_memory_bytes")) == 1
            # Prometheus's own counters of samples it refused from a scrape
            own = parse((await client.get(f"{prometheus}/metrics")).text)
            for rejected in (
                "prometheus_target_scrapes_sample_duplicate_timestamp_total",
                "prometheus_target_scrapes_sample_out_of_order_total",
            ):
                assert own[rejected] == 0, rejected
