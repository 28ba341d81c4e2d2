"""The evidence pack for auditors, unzipped: every manifest hash, the records, actions, reviews,
log entries (re-verified here, independently of the service), evaluations, windows and
objective versions of a hand-built March (tests/alerts/review_fixture.py); a row of the log
edited in the database makes the pack's verification name it. SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from services.alerts.evidence import FILES, MANIFEST
from shared.auth import Role, issue_token
from tests.alerts import review_fixture
from tests.alerts.test_review import check_march_of_credit

SECRET = "e" * 32
MARCH = {"system": "credit", "from": "2026-03-01", "to": "2026-03-31"}


def as_user(role: Role, subject: str = "avery") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, subject, role, 600)}"}


@pytest.fixture(params=["sqlite", "postgresql"])
async def served(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    url = review_fixture.database(
        request.param, tmp_path, lambda: str(request.getfixturevalue("database_url"))
    )
    async with review_fixture.serve(url, SECRET) as http:
        yield http, url


def unzip(content: bytes) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest and the files, after checking every file against its manifest hash."""
    with zipfile.ZipFile(io.BytesIO(content)) as pack:
        assert pack.testzip() is None
        files = {name: pack.read(name) for name in pack.namelist()}
    manifest = json.loads(files.pop(MANIFEST))
    assert [f["name"] for f in manifest["files"]] == list(FILES) == list(files)
    for listed in manifest["files"]:
        data = files[listed["name"]]
        assert hashlib.sha256(data).hexdigest() == listed["sha256"], listed["name"]
        assert len(data) == listed["bytes"]
    return manifest, files


def entry_hash(entry: dict[str, Any]) -> str:
    """An auditor's own check of one entry (docs/alerts.md): SHA-256 over the previous hash
    and the sorted-key compact JSON of the entry, its time in UTC without an offset."""
    at = datetime.fromisoformat(entry["at"]).astimezone(UTC).replace(tzinfo=None)
    canonical = {
        "seq": entry["seq"],
        "at": at.isoformat(timespec="microseconds"),
        "actor": entry["actor"],
        "kind": entry["kind"],
        "subject": entry["subject"],
        "before": entry["before"],
        "after": entry["after"],
    }
    body = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(entry["prev_hash"].encode() + body.encode()).hexdigest()


async def export(client: httpx.AsyncClient, **params: str) -> httpx.Response:
    return await client.get(
        "/v1/evidence", params={**MARCH, **params}, headers=as_user(Role.AUDITOR)
    )


async def test_the_pack_of_march_holds_the_evidence_and_its_hashes(
    served: tuple[httpx.AsyncClient, str],
) -> None:
    client, _url = served
    response = await export(client)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == (
        'attachment; filename="evidence-credit-20260301-20260401.zip"'
    )
    manifest, files = unzip(response.content)
    assert manifest["format"] == "watchkeeper-evidence-pack/1"
    assert (manifest["system_id"], manifest["from"], manifest["to"]) == (
        "credit",
        "2026-03-01T00:00:00+00:00",
        "2026-04-01T00:00:00+00:00",
    )
    assert manifest["exported_by"] == "avery" and manifest["chain_ok"] is True
    data = {name: json.loads(content) for name, content in files.items()}

    records = {r["id"]: r for r in data["records.json"]}
    assert set(records) == {"nc-A", "nc-B", "nc-C", "nc-D", "nc-G"}  # not E (closed), not H
    assert records["nc-A"]["status"] == "closed" and records["nc-B"]["recurrence_of"] == "nc-E"
    assert {a["id"] for a in data["actions.json"]} == {"act-a1", "act-b1"}
    [review] = data["reviews.json"]
    assert (review["nonconformity_id"], review["reviewer"], review["review_result"]) == (
        "nc-A",
        "rita",
        "confirmed",
    )
    assert [(s["kind"], s["to_state"] or s["evidence_status"]) for s in review["steps"]] == [
        ("transition", "effectiveness_review"),
        ("effectiveness_evidence", "met"),
        ("transition", "closed"),
    ]

    log = data["log.json"]
    assert [e["seq"] for e in log] == sorted(e["seq"] for e in log)
    subjects = {e["subject"] for e in log}
    assert subjects == {
        *(f"nc-{k}" for k in "ABCDG"),
        "objective:credit/acc",
        "objective:credit/psi",
    }
    for entry in log:
        assert entry_hash(entry) == entry["hash"], entry["seq"]
    verification = data["chain_verification.json"]
    assert (verification["ok"], verification["first_broken_seq"]) == (True, None)
    assert verification["head"]["seq"] == verification["entries"] == max(e["seq"] for e in log)

    evaluations = {e["evaluation_id"]: e for e in data["evaluations.json"]}
    assert set(evaluations) == {f"credit:acc:v1:{k}:r0" for k in "ABDG"}  # C is an audit's
    raised_a = evaluations["credit:acc:v1:A:r0"]
    assert (raised_a["reference"], raised_a["status"], raised_a["value"]) == (
        "NC-2026-0003",
        "breach",
        0.7,
    )
    assert [next(e for e in log if e["seq"] == s)["kind"] for s in raised_a["log_seqs"]] == [
        "raised"
    ]
    windows = data["windows.json"]
    assert len(windows) == 16 and {w["objective_id"] for w in windows} == {"acc", "psi"}

    objectives = {o["objective_id"]: o for o in data["objectives.json"]}
    acc = objectives["acc"]
    assert [v["version"] for v in acc["versions_in_force"]] == [1, 2]  # v2 from 15 March
    assert acc["current_definition"]["rationale"] == "wrong decisions harm applicants"
    assert acc["versions_cited_by_records"] == [1]
    assert [v["version"] for v in objectives["psi"]["versions_in_force"]] == [1]
    check_march_of_credit(data["management_review.json"])


async def test_a_log_row_edited_in_the_database_is_named_by_the_pack(
    served: tuple[httpx.AsyncClient, str],
) -> None:
    client, url = served
    _manifest, files = unzip((await export(client)).content)
    [contained] = [
        e
        for e in json.loads(files["log.json"])
        if e["subject"] == "nc-A" and (e["after"] or {}).get("status") == "contained"
    ]
    engine = create_engine(url)
    with engine.begin() as conn:  # someone rewrites who contained record A
        conn.execute(
            text("UPDATE alerts_log SET actor = 'mallory' WHERE seq = :seq"),
            {"seq": contained["seq"]},
        )
    engine.dispose()
    response = await export(client)
    assert response.status_code == 200 and response.headers["x-evidence-chain-ok"] == "false"
    manifest, files = unzip(response.content)  # the pack itself is still intact
    assert manifest["chain_ok"] is False
    verification = json.loads(files["chain_verification.json"])
    assert verification["ok"] is False
    assert verification["first_broken_seq"] == contained["seq"]
    assert verification["reason"] == "its content does not match its hash"
    assert verification["broken_entry"]["actor"] == "mallory"
    assert verification["broken_entry_in_pack"] is True
    [edited] = [e for e in json.loads(files["log.json"]) if e["seq"] == contained["seq"]]
    assert entry_hash(edited) != edited["hash"]  # an auditor finds it offline too


@pytest.mark.parametrize(
    "role,code",
    [
        (Role.QUALITY_MANAGER, 200),
        (Role.ADMIN, 200),
        (Role.AUDITOR, 200),
        (Role.SRE, 403),
        (Role.ML_ENGINEER, 403),
    ],
)
async def test_who_exports_the_pack(
    served: tuple[httpx.AsyncClient, str], role: Role, code: int
) -> None:
    client, _url = served
    response = await client.get("/v1/evidence", params=MARCH, headers=as_user(role))
    assert response.status_code == code


async def test_a_bad_request_is_a_4xx_naming_the_field(
    served: tuple[httpx.AsyncClient, str],
) -> None:
    client, _url = served
    bad = await export(client, **{"from": "yesterday"})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("from: 'yesterday'")
    unknown = await export(client, system="nobody")
    assert unknown.status_code == 404 and "system: no AI system 'nobody'" in unknown.text
