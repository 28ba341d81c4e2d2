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

from services.alerts.settings import Settings as AlertsSettings
from services.evaluator.settings import Settings as EvaluatorSettings
from services.ingest.settings import Settings as IngestSettings
from services.registry.settings import Settings as RegistrySettings
from tests.deployments import embedded_deployment

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SETTINGS = {
    "registry": RegistrySettings,
    "ingest": IngestSettings,
    "evaluator": EvaluatorSettings,
    "alerts": AlertsSettings,
}
METRIC = re.compile(r"\bwatchkeeper_[a-z0-9_]+")


RULES = DEPLOY / "prometheus" / "rules"


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool not found: `make system-deps` installs Debian's prometheus package")
    return subprocess.run(
        [tool, *args],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
    )


def rule_files() -> list[Path]:
    files = sorted(RULES.glob("*.yml"))
    assert files, f"no rule files in {RULES}"
    return files


def test_prometheus_config_is_valid() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_are_valid() -> None:
    result = promtool("check", "rules", *map(str, rule_files()))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_file_has_unit_tests() -> None:
    tested = set()
    for test_file in (RULES / "tests").glob("*.test.yml"):
        for name in yaml.safe_load(test_file.read_text())["rule_files"]:
            tested.add((test_file.parent / name).resolve())
    assert {p.resolve() for p in rule_files()} <= tested


def test_operations_docs_explain_every_alert() -> None:
    docs = (DEPLOY.parent / "docs/operations.md").read_text()
    alerts = [
        r["alert"]
        for path in rule_files()
        for g in yaml.safe_load(path.read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    ]
    assert alerts
    for alert in alerts:
        assert f"| {alert} |" in docs, f"docs/operations.md does not explain {alert}"


def test_alert_rules_fire_as_intended() -> None:
    tests = sorted(map(str, (RULES / "tests").glob("*.test.yml")))
    assert tests
    result = promtool("test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr


async def exported_metric_names(tmp_path: Path) -> set[str]:
    """Sample names the embedded platform's root /metrics (the four services' registries,
    running) exports; histograms as _bucket, _sum, _count. Names only: whether each panel
    and rule finds series is tests/deploy/test_prometheus.py's question."""
    names: set[str] = set()
    suffixes = {"histogram": ["_bucket", "_sum", "_count"]}
    async with embedded_deployment(tmp_path) as deployment, httpx.AsyncClient() as client:
        root = deployment.urls["registry"].rsplit("/", 1)[0]
        response = await client.get(f"{root}/metrics")
        assert response.status_code == 200, response.text
    for line in response.text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.update(name + s for s in suffixes.get(kind, [""]))
    return names


def used_metric_names() -> dict[str, set[str]]:
    exprs = [
        t["expr"]
        for path in (DEPLOY / "grafana/dashboards").glob("*.json")
        for p in json.loads(path.read_text())["panels"]
        for t in p.get("targets", [])
    ]
    exprs_rules = [
        r["expr"]
        for path in rule_files()
        for g in yaml.safe_load(path.read_text())["groups"]
        for r in g["rules"]
    ]
    return {
        "dashboard": {m for e in exprs for m in METRIC.findall(e)},
        "rules": {m for e in exprs_rules for m in METRIC.findall(e)},
    }


async def test_dashboards_and_rules_use_exported_metrics(tmp_path: Path) -> None:
    exported = await exported_metric_names(tmp_path)
    used = used_metric_names()
    assert used["dashboard"], "the dashboards query no Watchkeeper metric"
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
