"""``watchkeeper evidence export`` against an alerts service served over HTTP (SQLite, the
hand-built March of tests/alerts/review_fixture.py)."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from services.alerts.app import create_app
from services.alerts.settings import Settings
from shared.auth import Role, issue_token
from tests.alerts import review_fixture
from tests.deployments import serve_in_thread
from watchkeeper.cli import app

SECRET = "x" * 32
MARCH = ["--system", "credit", "--from", "2026-03-01", "--to", "2026-03-31"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str]]:
    url = review_fixture.database("sqlite", tmp_path, lambda: "")
    settings = Settings(database_url=url, auth_secret=SECRET)
    for base in serve_in_thread(create_app(settings), "alerts"):
        yield base, url


def run(base: str, *args: str, role: Role = Role.AUDITOR) -> Result:
    token = issue_token(SECRET, "avery", role, 600)
    return CliRunner().invoke(app, ["evidence", "export", *args, "--url", base, "--token", token])


def test_export_writes_a_pack_whose_manifest_checks(
    served: tuple[str, str], tmp_path: Path
) -> None:
    base, _url = served
    target = tmp_path / "pack.zip"
    result = run(base, *MARCH, "-o", str(target))
    assert result.exit_code == 0, result.output
    assert f"wrote {target}" in result.output
    assert "9 files, every SHA-256 of the manifest checked" in result.output
    assert "hash chain verified" in result.output
    with zipfile.ZipFile(target) as pack:
        manifest = json.loads(pack.read("manifest.json"))
        for listed in manifest["files"]:
            assert hashlib.sha256(pack.read(listed["name"])).hexdigest() == listed["sha256"]
        records = json.loads(pack.read("records.json"))
    assert manifest["system_id"] == "credit" and manifest["exported_by"] == "avery"
    assert {r["id"] for r in records} == {"nc-A", "nc-B", "nc-C", "nc-D", "nc-G"}
    assert not list(tmp_path.glob(".evidence-*"))  # no temporary file left behind

    as_json = run(base, *MARCH, "-o", str(target), "--json")
    assert as_json.exit_code == 0, as_json.output
    printed = json.loads(as_json.stdout)
    assert printed["chain_verification"]["ok"] is True and printed["chain_ok"] is True


def test_without_output_the_pack_takes_the_services_name(
    served: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, _url = served
    monkeypatch.chdir(tmp_path)
    result = run(base, *MARCH)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "evidence-credit-20260301-20260401.zip").is_file()


def test_a_broken_chain_is_exit_2_naming_the_entry(served: tuple[str, str], tmp_path: Path) -> None:
    base, url = served
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alerts_log SET actor = 'mallory' WHERE seq = 7"))
    engine.dispose()
    target = tmp_path / "pack.zip"
    result = run(base, *MARCH, "-o", str(target))
    assert result.exit_code == 2, result.output
    assert "hash chain BROKEN at entry 7: its content does not match its hash" in result.output
    assert target.is_file()  # the pack is the evidence of the break


@pytest.mark.parametrize(
    "args,role,code,message",
    [
        (["--from", "March"], Role.AUDITOR, 2, "'March' is not an ISO date"),
        (["--to", "2026-02-30"], Role.AUDITOR, 2, "'2026-02-30' is not an ISO date"),
        (["--system", "nobody"], Role.AUDITOR, 1, "404"),
        (["--from", "2026-04-01", "--to", "2026-03-01"], Role.AUDITOR, 1, "from: must be before"),
        (MARCH, Role.SRE, 1, "403"),
        ([*MARCH, "-o", "/nonexistent/dir/pack.zip"], Role.AUDITOR, 2, "is not a directory"),
    ],
)
def test_errors_are_clear(
    served: tuple[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    role: Role,
    code: int,
    message: str,
) -> None:
    base, _url = served
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = run(base, *args, role=role)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert not list(work.iterdir())  # nothing written, no temporary file left


def test_an_unreachable_service_is_exit_1(tmp_path: Path) -> None:
    result = run("http://127.0.0.1:9", *MARCH, "-o", str(tmp_path / "p.zip"))
    assert result.exit_code == 1 and "GET http://127.0.0.1:9/v1/evidence" in result.output
