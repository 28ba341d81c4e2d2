"""The registry commands of the ``watchkeeper`` CLI against a registry served over HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from services.registry.app import create_app
from services.registry.settings import Settings
from shared.auth import Role, verify_token
from tests.deployments import serve_in_thread
from tests.factories import unique
from tests.registry.conftest import SECRET
from tests.registry.test_references import known_dataset
from watchkeeper.cli import app

Run = Callable[..., Any]


def serve(settings: Settings) -> Iterator[str]:
    yield from serve_in_thread(create_app(settings), "registry")


@pytest.fixture
def registry_url(tmp_path: Path, registry_database: str) -> Iterator[str]:
    yield from serve(
        Settings(database_url=registry_database, reference_dir=tmp_path / "references")
    )


@pytest.fixture
def run(registry_url: str) -> Run:
    runner = CliRunner()

    def invoke(*args: str, code: int = 0, **env: str) -> Any:
        result = runner.invoke(app, [*args], env={"WK_REGISTRY_URL": registry_url, **env})
        assert result.exit_code == code, f"{args}: {result.output}{result.stderr}"
        return result

    return invoke


def declaration(system_id: str, **objective: Any) -> dict[str, Any]:
    return {
        "system": {
            "id": system_id,
            "name": "Loan approval",
            "owner": "ml-team@example.org",
            "intended_purpose": "Pre-screen consumer loan applications",
            "risk_level": "high",
            "task": "binary_classification",
            "features": [
                {"name": "income", "type": "numeric", "min": 0},
                {"name": "age", "type": "numeric", "min": 18, "max": 100},
                {"name": "children", "type": "numeric", "nullable": True},
                {"name": "region", "type": "categorical", "categories": ["north", "south", "east"]},
                {"name": "existing_customer", "type": "boolean", "nullable": True},
            ],
            "prediction": {"classes": ["0", "1"], "scores": ["1"]},
        },
        "objectives": [
            {
                "id": f"{system_id}-accuracy",
                "metric": "accuracy",
                "comparator": "ge",
                "threshold": 0.8,
                "window_seconds": 3600,
                "owner": "quality@example.org",
                "rationale": "wrong decisions harm applicants",
                "references": ["ISO/IEC 42001 6.2"],
                **objective,
            },
            {
                "id": f"{system_id}-income-drift",
                "metric": "psi",
                "parameters": {"feature": "income"},
                "comparator": "lt",
                "threshold": 0.2,
                "window_seconds": 86400,
                "owner": "ml-team@example.org",
            },
        ],
    }


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_apply_is_idempotent_and_versions_changes(run: Run, tmp_path: Path) -> None:
    system_id = unique("loan")
    accuracy = f"{system_id}-accuracy"
    file = write(tmp_path / "monitoring.yaml", declaration(system_id))

    first = orjson.loads(run("apply", str(file), "--changed-by", "carol").stdout)
    assert first["system"] == "created"
    assert set(first["objectives"].values()) == {"created"}
    again = orjson.loads(run("apply", str(file), "--changed-by", "carol").stdout)
    assert again == {
        "system": "unchanged",
        "objectives": {accuracy: "unchanged", f"{system_id}-income-drift": "unchanged"},
        "versions": {accuracy: 1, f"{system_id}-income-drift": 1},
    }

    write(file, declaration(system_id, threshold=0.85))
    changed = orjson.loads(run("systems", "apply", str(file), "--changed-by", "dave").stdout)
    assert changed["objectives"][accuracy] == "updated"
    assert changed["versions"][accuracy] == 2
    assert changed["objectives"][f"{system_id}-income-drift"] == "unchanged"

    write(file, declaration(system_id, threshold=0.9, reason="Q3 management review"))
    run("apply", str(file), "--changed-by", "erin")
    history = orjson.loads(run("objectives", "history", system_id, accuracy, "--json").stdout)
    assert [
        (v["version"], v["threshold"], v["changed_by"], v["change_reason"]) for v in history
    ] == [
        (1, 0.8, "carol", "applied from monitoring.yaml"),
        (2, 0.85, "dave", "applied from monitoring.yaml"),
        (3, 0.9, "erin", "Q3 management review"),
    ]
    table = run("objectives", "history", system_id, accuracy).stdout
    assert "Q3 management review" in table


def test_apply_refuses_an_unknown_metric(run: Run, tmp_path: Path) -> None:
    file = write(tmp_path / "bad.yaml", declaration(unique("loan"), metric="accuracy_at_k"))
    result = run("apply", str(file), code=1)
    assert "unknown metric 'accuracy_at_k'" in result.stderr
    assert "objectives" in result.stderr


def test_apply_names_the_field_of_a_number_out_of_range(run: Run, tmp_path: Path) -> None:
    cases = [
        ("threshold", float("nan"), "objectives.0.threshold: Input should be a finite number"),
        ("threshold", float("-inf"), "objectives.0.threshold: Input should be a finite number"),
        ("window_seconds", 2**63, "objectives.0.window_seconds: Input should be less than or"),
    ]
    for field, value, line in cases:
        file = write(tmp_path / "bad.yaml", declaration(unique("loan"), **{field: value}))
        result = run("apply", str(file), code=1)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.exception
        )
        assert "422" in result.stderr
        assert line in result.stderr, result.stderr


def test_systems_objectives_references_and_keys(run: Run, tmp_path: Path) -> None:
    system_id = unique("loan")
    document = declaration(system_id)
    system_file = write(tmp_path / "system.yaml", document["system"])
    run("systems", "create", str(system_file))
    assert system_id in [s["id"] for s in orjson.loads(run("systems", "list", "--json").stdout)]
    assert system_id in run("systems", "list").stdout  # the id column never wraps
    objective_file = write(tmp_path / "objective.yaml", document["objectives"][0])
    run("objectives", "create", system_id, str(objective_file), "--changed-by", "carol")
    listed = orjson.loads(run("objectives", "list", system_id, "--json").stdout)
    assert [(o["id"], o["version"], o["changed_by"]) for o in listed] == [
        (f"{system_id}-accuracy", 1, "carol")
    ]

    dataset = tmp_path / "reference.csv"
    known_dataset(n=2_000).to_csv(dataset, index=False)
    uploaded = orjson.loads(run("reference", "upload", str(dataset), "--system", system_id).stdout)
    assert uploaded["n_rows"] == 2_000 and uploaded["current"]
    listed = orjson.loads(run("reference", "list", system_id, "--json").stdout)
    assert [(r["hash"], r["current"]) for r in listed] == [(uploaded["hash"], True)]
    assert uploaded["hash"] in run("reference", "list", system_id).stdout

    key = run("keys", "create", system_id, "--name", "production").stdout.strip()
    assert key.startswith("wk_")
    shown = orjson.loads(run("systems", "show", system_id).stdout)
    assert shown["reference_hash"] == uploaded["hash"]
    assert [k["name"] for k in shown["ingest_keys"]] == ["production"]
    assert key not in orjson.dumps(shown).decode()
    run("keys", "revoke", system_id, shown["ingest_keys"][0]["id"])
    (revoked,) = orjson.loads(run("keys", "list", system_id, "--json").stdout)
    assert revoked["active"] is False
    assert revoked["id"] in run("keys", "list", system_id).stdout


def test_reference_upload_reports_bad_columns(run: Run, tmp_path: Path) -> None:
    system_id = unique("loan")
    run("systems", "create", str(write(tmp_path / "s.yaml", declaration(system_id)["system"])))
    frame = known_dataset(n=100).astype({"age": object})
    frame.loc[41, "age"] = "forty"
    dataset = tmp_path / "reference.csv"
    frame.to_csv(dataset, index=False)
    result = run("reference", "upload", str(dataset), "--system", system_id, code=1)
    assert "column 'age': row 42: not a number" in result.stderr


def test_tokens_and_a_secured_registry(tmp_path: Path) -> None:
    runner = CliRunner()
    issued = runner.invoke(
        app,
        ["tokens", "issue", "--subject", "alice", "--role", "ml_engineer", "--ttl", "1h"],
        env={"WK_AUTH_SECRET": SECRET},
    )
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip()
    assert verify_token(SECRET, token).role is Role.ML_ENGINEER
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'r.db'}",
        reference_dir=tmp_path / "references",
        auth_secret=SECRET,
    )
    for url in serve(settings):
        env = {"WK_REGISTRY_URL": url}
        refused = runner.invoke(app, ["systems", "list"], env=env)
        assert refused.exit_code == 1 and "401" in refused.stderr
        file = write(tmp_path / "monitoring.yaml", declaration(unique("loan")))
        applied = runner.invoke(app, ["apply", str(file)], env=env | {"WK_TOKEN": token})
        assert applied.exit_code == 0, applied.stderr
        system_id = orjson.loads(applied.stdout)["objectives"]
        assert system_id
        history = runner.invoke(
            app,
            ["objectives", "history", "--json", *next(iter(_objective_of(file)))],
            env=env | {"WK_TOKEN": token},
        )
        assert orjson.loads(history.stdout)[0]["changed_by"] == "alice"


def _objective_of(file: Path) -> Iterator[tuple[str, str]]:
    document = yaml.safe_load(file.read_text())
    yield document["system"]["id"], document["objectives"][0]["id"]


def test_migrate_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    runner = CliRunner()
    result = runner.invoke(app, ["migrate", "registry", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "registry: applied 0001" in result.stderr
    engine = create_engine(url)
    try:
        assert "registry_objective_version" in inspect(engine).get_table_names()
    finally:
        engine.dispose()
    again = runner.invoke(app, ["migrate", "registry", "--database-url", url])
    assert "registry: up to date" in again.stderr
    missing = runner.invoke(app, ["migrate", "nothing", "--database-url", url])
    assert missing.exit_code == 1
