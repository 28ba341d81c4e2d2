"""The provisioned Grafana dashboards: built by watchkeeper.dashboards (the SDK's typed
builders), up to date, valid dashboard models, provisioned, and documented panel by panel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from watchkeeper.dashboards import DASHBOARDS, OUT_DIR, main, render

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(OUT_DIR.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_the_generated_files_are_up_to_date() -> None:
    assert set(dashboards()) == set(DASHBOARDS)
    assert main(["--check"]) == 0, "run `make dashboards`"


def test_check_names_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    (tmp_path / "fleet.json").write_text(render("fleet").replace("Fleet", "Flet"))
    (tmp_path / "old.json").write_text("{}")
    assert main(["--out", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "fleet.json is stale" in err and "old.json is not built" in err


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_each_file_is_a_valid_dashboard_model(name: str) -> None:
    """Decoded into the SDK's typed model and encoded again, nothing is lost or added."""
    raw = dashboards()[name]
    again = json.loads(json.dumps(Dashboard.from_json(raw), cls=JSONEncoder))
    assert again == raw
    assert raw["uid"].startswith("watchkeeper-") and raw["schemaVersion"] >= 39


def test_uids_are_unique_and_panels_are_numbered() -> None:
    found = dashboards()
    assert len({d["uid"] for d in found.values()}) == len(found)
    for name, dashboard in found.items():
        ids = [p["id"] for p in dashboard["panels"]]
        assert ids == list(range(1, len(ids) + 1)), name


def test_every_panel_asks_a_question_of_prometheus() -> None:
    for name, dashboard in dashboards().items():
        for panel in panels(dashboard):
            where = f"{name}: {panel['title']}"
            assert panel["description"].rstrip(")").endswith(("?", ".")), where
            assert "?" in panel["description"], where
            assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, where
            refs = [t["refId"] for t in panel["targets"]]
            assert refs and len(set(refs)) == len(refs), where
            assert all(t["expr"].strip() for t in panel["targets"]), where


def test_the_ai_system_dashboard_picks_a_system_and_its_objectives() -> None:
    dashboard = dashboards()["ai-system"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"system", "objective"} <= set(variables)
    assert "$system" in variables["objective"]["query"]
    assert variables["objective"]["multi"] and variables["objective"]["includeAll"]
    exprs = [t["expr"] for p in panels(dashboard) for t in p["targets"]]
    assert all('system="$system"' in e for e in exprs)
    assert any('objective=~"$objective"' in e for e in exprs)
    repeated = [p for p in panels(dashboard) if p.get("repeat") == "objective"]
    assert len(repeated) == 1
    assert [t["legendFormat"] for t in repeated[0]["targets"]] == ["{{metric}}", "threshold"]
    links = [link["url"] for link in dashboard["links"] if link["type"] == "link"]
    assert "${alerts_url}/?system=${system}" in links


def test_grafana_provisioning_loads_the_dashboards_directory() -> None:
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/watchkeeper.yaml").read_text()
    )["providers"][0]
    datasource = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    )["datasources"][0]
    assert datasource["uid"] == "prometheus"
    grafana = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    assert mounts[provider["options"]["path"]] == "./grafana/dashboards"
    assert (DEPLOY / "grafana/dashboards").resolve() == OUT_DIR.resolve()


def test_docs_list_every_panel() -> None:
    docs = (REPO / "docs/operations.md").read_text()
    for name, dashboard in dashboards().items():
        assert dashboard["title"] in docs, name
        for panel in panels(dashboard):
            assert f"| {panel['title']} |" in docs, f"{name}: {panel['title']}"
