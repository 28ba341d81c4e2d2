"""The deployment files agree with the code: Prometheus config and alert rules are valid and
fire as intended, dashboards and rules name metrics the services really export, and every
environment variable the compose and Kubernetes files set is a setting the service reads."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from services.alerts.app import create_app as create_alerts
from services.alerts.settings import Settings as AlertsSettings
from services.evaluator.app import create_app as create_evaluator
from services.evaluator.settings import Settings as EvaluatorSettings
from services.ingest.app import create_app as create_ingest
from services.ingest.settings import Settings as IngestSettings
from services.registry.app import create_app as create_registry
from services.registry.settings import Settings as RegistrySettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SETTINGS = {
    "registry": RegistrySettings,
    "ingest": IngestSettings,
    "evaluator": EvaluatorSettings,
    "alerts": AlertsSettings,
}
METRIC = re.compile(r"\bwatchkeeper_[a-z0-9_]+")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool not found: `make system-deps` installs Debian's prometheus package")
    return subprocess.run(
        [tool, *args], cwd=DEPLOY / "prometheus", capture_output=True, text=True, timeout=60
    )


def test_prometheus_config_is_valid() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_fire_as_intended() -> None:
    result = promtool("test", "rules", "rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


async def exported_metric_names(tmp_path: Path) -> set[str]:
    """Sample names each service's /metrics exports (histograms as _bucket, _sum, _count)."""
    names: set[str] = set()
    factories: list[Any] = [
        (create_registry, RegistrySettings),
        (create_ingest, IngestSettings),
        (create_evaluator, EvaluatorSettings),
        (create_alerts, AlertsSettings),
    ]
    suffixes = {"histogram": ["_bucket", "_sum", "_count"]}
    for create_app, settings_type in factories:
        app = create_app(settings_type(database_url=f"sqlite:///{tmp_path / 'm.db'}"))
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            text = (await client.get("/metrics")).text
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split()
                names.update(name + s for s in suffixes.get(kind, [""]))
    return names


def used_metric_names() -> dict[str, set[str]]:
    dashboard = json.loads((DEPLOY / "grafana/dashboards/watchkeeper.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((DEPLOY / "prometheus/rules.yml").read_text())
    exprs_rules = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    return {
        "dashboard": {m for e in exprs for m in METRIC.findall(e)},
        "rules": {m for e in exprs_rules for m in METRIC.findall(e)},
    }


async def test_dashboard_and_rules_use_exported_metrics(tmp_path: Path) -> None:
    exported = await exported_metric_names(tmp_path)
    used = used_metric_names()
    assert used["dashboard"], "the dashboard queries no Watchkeeper metric"
    for where, names in used.items():
        assert names <= exported, f"{where} uses metrics nobody exports: {names - exported}"


def _env_names(environment: Any) -> list[str]:
    if isinstance(environment, dict):
        return list(environment)
    return [e["name"] for e in environment]


def _check_env(service: str, names: list[str]) -> None:
    prefix = f"WK_{service.upper()}_"
    fields = SETTINGS[service].model_fields
    for name in names:
        if name == "SERVICE":
            continue
        assert name.startswith(prefix), f"{service}: {name} lacks the {prefix} prefix"
        assert name.removeprefix(prefix).lower() in fields, f"{service}: no setting for {name}"


def test_compose_sets_only_real_settings() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for service in SETTINGS:
        _check_env(service, _env_names(compose["services"][service]["environment"]))


def test_kubernetes_sets_only_real_settings() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes/services.yaml").read_text()))
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == set(SETTINGS)
    for service, deployment in deployments.items():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        _check_env(service, _env_names(container["env"]))
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
