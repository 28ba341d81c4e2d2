"""The management review report (ISO/IEC 42001 9.3): its numbers against a hand-built history
(tests/alerts/review_fixture.py), worked out by hand here, as pure logic and over HTTP on
SQLite and PostgreSQL; roles, bad periods and the HTML page."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.alerts.review import (
    Period,
    ReviewRows,
    bar_chart,
    buckets,
    management_review,
    parse_bound,
    period_from_query,
)
from shared.auth import Role, issue_token
from tests.alerts import review_fixture
from tests.alerts.review_fixture import at
from tests.deployments import fresh_database

SECRET = "r" * 32
MARCH = Period(at("2026-03-01T00:00:00"), at("2026-04-01T00:00:00"), "credit")
HOUR = 3600.0
DAY = 86_400.0


def as_user(role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, f'a-{role.value}', role, 600)}"}


def pure_report(period: Period) -> dict[str, Any]:
    fixture = review_fixture.build()
    snapshot = review_fixture.registry_snapshot()
    rows = ReviewRows(
        records=list(fixture.records.values()),
        actions=list(fixture.actions.values()),
        log=fixture.log,
        windows=fixture.windows,
        objectives={
            (snapshot.system_id, o.id): o.model_dump(mode="json") for o in snapshot.objectives
        },
    )
    return management_review(period, rows, now=datetime(2026, 12, 1, tzinfo=UTC))


def check_march_of_credit(report: dict[str, Any]) -> None:
    """The hand count of March 2026, system credit (see review_fixture.build)."""
    assert (report["from"], report["to"], report["as_of"]) == (
        "2026-03-01T00:00:00+00:00",
        "2026-04-01T00:00:00+00:00",
        "2026-04-01T00:00:00+00:00",
    )
    ncs = report["nonconformities"]
    # in scope: C (open at the start), A, B, D, G raised in March; E closed in February, H is
    # another system's
    assert ncs["raised"] == 4  # A, B, D, G
    assert ncs["raised_by_classification"] == {"major": 1, "minor": 2, "observation": 1}
    assert ncs["raised_by_source"] == {"monitoring": 4}
    assert (ncs["closed"], ncs["rejected"], ncs["withdrawn"]) == (1, 1, 1)  # A, D, G
    assert ncs["recurrences"] == 1  # B recurs E
    assert (ncs["open_at_start"], ncs["open_at_end"]) == (1, 2)  # C; B and C
    assert {s: n for s, n in ncs["at_end_by_state"].items() if n} == {
        "contained": 1,
        "action_planned": 1,
        "closed": 1,
        "rejected": 1,
        "withdrawn": 1,
    }
    matrix = {
        c: {s: n for s, n in states.items() if n}
        for c, states in ncs["at_end_by_classification_and_state"].items()
    }
    assert matrix == {
        "major": {"closed": 1},
        "minor": {"action_planned": 1, "withdrawn": 1},
        "observation": {"contained": 1, "rejected": 1},  # D was reclassified
    }
    assert ncs["trend_unit"] == "day" and len(ncs["trend"]) == 31
    by_day = {t["start"][:10]: t for t in ncs["trend"]}
    assert by_day["2026-03-02"]["raised"] == {"major": 1, "minor": 0, "observation": 0}
    assert by_day["2026-03-20"]["raised"] == {"major": 0, "minor": 0, "observation": 1}
    assert sum(t["closed"] for t in ncs["trend"]) == 1 and by_day["2026-03-12"]["closed"] == 1
    assert {s: n for s, n in by_day["2026-03-01"]["open_by_state"].items() if n} == {"triaged": 1}
    assert {s: n for s, n in by_day["2026-03-31"]["open_by_state"].items() if n} == {
        "contained": 1,
        "action_planned": 1,
    }

    contain = report["time_to_contain"]
    # A 24 h (2 March 10:00 -> 3 March 10:00), B 12 h, C 18 days (20 Feb -> 10 March)
    assert contain["n"] == 3
    assert contain["mean_seconds"] == pytest.approx((24 + 12 + 18 * 24) * HOUR / 3)
    assert contain["by_classification"] == {
        "major": {"n": 1, "mean_seconds": 24 * HOUR},
        "minor": {"n": 1, "mean_seconds": 12 * HOUR},
        "observation": {"n": 1, "mean_seconds": 18 * DAY},
    }
    close = report["time_to_close"]
    assert (close["n"], close["mean_seconds"]) == (1, 10 * DAY)  # A: 2 March -> 12 March

    actions = report["actions"]
    assert (actions["planned"], actions["implemented"], actions["overdue_count"]) == (2, 1, 1)
    [late] = actions["overdue"]
    assert (late["action_id"], late["status"], late["reference"]) == (
        "act-b1",
        "in_progress",
        "NC-2026-0004",
    )
    assert late["days_overdue"] == pytest.approx(17)  # due 15 March, as of 1 April
    [late_record] = report["overdue_nonconformities"]
    assert (late_record["nonconformity_id"], late_record["state"]) == ("nc-C", "contained")
    assert late_record["days_overdue"] == pytest.approx(12)  # due 20 March

    effectiveness = report["effectiveness"]
    assert effectiveness["results"] == {"confirmed": 1, "not_effective": 0, "inconclusive": 0}
    assert effectiveness["automatic_evidence"] == {"met": 1, "breached": 0}
    [review] = effectiveness["reviews"]
    assert (review["nonconformity_id"], review["reviewer"]) == ("nc-A", "rita")

    objectives = {o["objective_id"]: o for o in report["objectives"]}
    assert set(objectives) == {"acc", "psi"}
    acc = objectives["acc"]
    assert (acc["windows"], acc["met"], acc["breached"], acc["not_judged"]) == (10, 7, 3, 2)
    assert acc["attainment"] == pytest.approx(0.7) and acc["threshold"] == 0.85
    assert (objectives["psi"]["windows"], objectives["psi"]["attainment"]) == (4, 1.0)

    [change] = report["objective_changes"]
    assert (change["objective_id"], change["from_version"], change["to_version"]) == ("acc", 1, 2)
    assert (change["threshold"], change["changed_by"]) == (0.85, "alice")
    assert change["changed_at"] == "2026-03-15T00:00:00+00:00"


def check_march_of_all(report: dict[str, Any]) -> None:
    """All systems: H (fraud, contained in 1 h, its objective f1 breached twice) joins."""
    ncs = report["nonconformities"]
    assert report["system_id"] is None
    assert ncs["raised"] == 5 and ncs["raised_by_classification"]["major"] == 2
    contain = report["time_to_contain"]
    assert contain["n"] == 4
    assert contain["mean_seconds"] == pytest.approx((24 + 12 + 18 * 24 + 1) * HOUR / 4)
    f1 = next(o for o in report["objectives"] if o["objective_id"] == "f1")
    assert (f1["system_id"], f1["windows"], f1["attainment"]) == ("fraud", 2, 0.0)


# --- pure logic -----------------------------------------------------------------------------


def test_the_report_of_a_hand_built_march() -> None:
    check_march_of_credit(pure_report(MARCH))


def test_all_systems_add_the_other_systems_records_and_objectives() -> None:
    check_march_of_all(pure_report(Period(MARCH.start, MARCH.end, None)))


def test_a_period_before_anything_happened_is_empty_not_an_error() -> None:
    report = pure_report(Period(at("2025-01-01T00:00:00"), at("2025-02-01T00:00:00"), "credit"))
    assert report["nonconformities"]["raised"] == 0
    assert report["time_to_contain"] == {
        "n": 0,
        "mean_seconds": None,
        "by_classification": {
            c: {"n": 0, "mean_seconds": None} for c in ("major", "minor", "observation")
        },
    }
    assert {o["objective_id"]: o["attainment"] for o in report["objectives"]} == {
        "acc": None,
        "psi": None,
    }


def test_the_period_is_read_from_dates_or_times_and_checked() -> None:
    now = datetime(2026, 5, 10, 8, 0, tzinfo=UTC)
    period = period_from_query("credit", "2026-03-01", "2026-03-31", now=now)
    assert (period.start, period.end) == (at("2026-03-01T00:00:00"), at("2026-04-01T00:00:00"))
    default = period_from_query("all", None, None, now=now)
    assert default == Period(now - timedelta(days=90), now, None)
    assert parse_bound("to", "2026-03-01T12:00:00Z", end=True) == at("2026-03-01T12:00:00")
    with pytest.raises(ValueError, match=r"^from: must be before to"):
        period_from_query(None, "2026-04-01", "2026-03-01", now=now)
    with pytest.raises(ValueError, match=r"^to: 'March' is not an ISO date"):
        period_from_query(None, None, "March", now=now)


@pytest.mark.parametrize(
    "days,unit,count",
    [(1, "day", 1), (31, "day", 31), (32, "week", 5), (182, "week", 26), (366, "month", 13)],
)
def test_trend_buckets_cover_the_period_without_gaps(days: int, unit: str, count: int) -> None:
    start = at("2026-01-15T00:00:00")
    period = Period(start, start + timedelta(days=days))
    found_unit, edges = buckets(period)
    assert (found_unit, len(edges)) == (unit, count)
    assert edges[0][0] == period.start and edges[-1][1] == period.end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(edges))


# --- over HTTP, on SQLite and PostgreSQL ------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
async def client(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    url = review_fixture.database(
        request.param, tmp_path, lambda: str(request.getfixturevalue("database_url"))
    )
    async with review_fixture.serve(url, SECRET) as http:
        yield http


MARCH_QUERY = {"system": "credit", "from": "2026-03-01", "to": "2026-03-31"}


async def test_the_report_over_http_matches_the_hand_count(client: httpx.AsyncClient) -> None:
    qm = as_user(Role.QUALITY_MANAGER)
    verified = (await client.get("/v1/log/verify", headers=qm)).json()
    assert verified["ok"] is True  # the fixture's chain is what the service would have written
    response = await client.get("/v1/reports/management-review", params=MARCH_QUERY, headers=qm)
    assert response.status_code == 200, response.text
    check_march_of_credit(response.json())
    everything = await client.get(
        "/v1/reports/management-review",
        params={"from": "2026-03-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"},
        headers=qm,
    )
    assert everything.status_code == 200, everything.text
    check_march_of_all(everything.json())
    assert everything.json()["unattributed_windows"] == 1  # the fixture's unknown fingerprint


@pytest.mark.parametrize(
    "role,code",
    [
        (Role.QUALITY_MANAGER, 200),
        (Role.ADMIN, 200),
        (Role.AUDITOR, 200),
        (Role.SRE, 200),
        (Role.ML_ENGINEER, 403),
    ],
)
async def test_who_reads_the_review(client: httpx.AsyncClient, role: Role, code: int) -> None:
    response = await client.get(
        "/v1/reports/management-review", params=MARCH_QUERY, headers=as_user(role)
    )
    assert response.status_code == code, response.text
    page = await client.get("/review", params=MARCH_QUERY, headers=as_user(role))
    assert page.status_code == code
    if code == 200:  # the pack link only for those who may export it
        assert ('href="v1/evidence?' in page.text) is (role is not Role.SRE)
    anonymous = await client.get("/v1/reports/management-review", params=MARCH_QUERY)
    assert anonymous.status_code == 401


@pytest.mark.parametrize(
    "params,code,field",
    [
        ({"from": "March"}, 422, "from: 'March' is not an ISO date"),
        ({"to": "2026-13-01"}, 422, "to: '2026-13-01' is not an ISO date"),
        ({"from": "2026-04-01", "to": "2026-03-01"}, 422, "from: must be before to"),
        ({"system": "nobody"}, 404, "system: no AI system 'nobody'"),
    ],
)
async def test_a_bad_period_is_a_4xx_naming_the_field(
    client: httpx.AsyncClient, params: dict[str, str], code: int, field: str
) -> None:
    qm = as_user(Role.QUALITY_MANAGER)
    response = await client.get("/v1/reports/management-review", params=params, headers=qm)
    assert response.status_code == code and field in response.json()["detail"]
    page = await client.get("/review", params=params, headers=qm)
    assert page.status_code == code and field.replace("'", "&#39;") in page.text


async def test_the_page_shows_every_section_and_its_charts(client: httpx.AsyncClient) -> None:
    page = await client.get("/review", params=MARCH_QUERY, headers=as_user(Role.AUDITOR))
    assert page.status_code == 200
    html = page.text
    for heading in (
        "Management review",
        "Nonconformities",
        "Time to contain and to close",
        "Corrective actions",
        "Effectiveness of actions",
        "Objective attainment",
        "Changes to objectives",
    ):
        assert f">{heading}</h" in html, heading
    for chart in ("chart-raised", "chart-backlog", "chart-attainment"):
        assert f'<svg id="{chart}"' in html
    assert "6.5 days" in html  # mean time to contain: (24 h + 12 h + 18 days) / 3
    assert "NC-2026-0004" in html and "70.0 %" in html  # B's overdue action; acc's attainment
    assert "@media print" in html and "<script src" not in html  # prints; nothing from a CDN


def test_objectives_read_their_version_in_force_from_the_log() -> None:
    """Without the registry topic, the metric and target come from the log's versions: the
    one in force at the end of the period (acc v2 from 15 March), not a later one."""
    fixture = review_fixture.build()
    rows = ReviewRows(
        records=list(fixture.records.values()),
        actions=list(fixture.actions.values()),
        log=fixture.log,
        windows=fixture.windows,
    )
    march = management_review(MARCH, rows, now=datetime(2026, 12, 1, tzinfo=UTC))
    found = {o["objective_id"]: o for o in march["objectives"]}
    assert (found["acc"]["version"], found["acc"]["threshold"]) == (2, 0.85)
    assert (found["psi"]["metric"], found["psi"]["comparator"]) == ("psi", "lt")
    early = Period(at("2026-03-01T00:00:00"), at("2026-03-10T00:00:00"), "credit")
    report = management_review(early, rows, now=datetime(2026, 12, 1, tzinfo=UTC))
    acc = next(o for o in report["objectives"] if o["objective_id"] == "acc")
    assert (acc["version"], acc["threshold"]) == (1, 0.8)


@pytest.mark.parametrize(
    "peak,ticks", [(1, ["0", "1"]), (3, ["0", "1", "2", "3"]), (7, ["0", "2", "4", "6", "8"])]
)
def test_chart_axes_count_in_whole_numbers(peak: int, ticks: list[str]) -> None:
    chart = bar_chart(["a", "b"], [("major", "#000", [peak, 0])], height=120)
    assert [t["label"] for t in chart["ticks"]] == ticks
    [bar] = chart["rects"]
    top = min(t["y"] for t in chart["ticks"])
    assert bar["h"] == pytest.approx((chart["baseline"] - top) * peak / int(ticks[-1]))


# --- a lifecycle walked through the API, as the service writes its log ------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_lifecycle_walked_through_the_api_is_reported_and_packed(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'live.db'}"
        if kind == "sqlite"
        else fresh_database(str(request.getfixturevalue("database_url")))
    )
    qm = as_user(Role.QUALITY_MANAGER)
    async with review_fixture.serve(url, SECRET) as client:

        async def step(ref: str, to: str, **fields: Any) -> None:
            response = await client.post(
                f"/v1/nonconformities/{ref}/transitions", json={"to": to, **fields}, headers=qm
            )
            assert response.status_code == 200, response.text

        created = await client.post(
            "/v1/nonconformities",
            json={
                "source": "incident",
                "system_id": "credit",
                "title": "t",
                "classification": "major",
            },
            headers=qm,
        )
        nc = created.json()
        ref = nc["reference"]
        await step(ref, "triaged")
        await step(ref, "contained", containment="fallback")
        await step(ref, "cause_analysed", root_cause_method="five_whys", root_cause="drift")
        action = await client.post(
            f"/v1/nonconformities/{ref}/actions",
            json={"description": "retrain", "owner": "olivia", "due_at": "2000-01-01T00:00:00Z"},
            headers=qm,
        )
        assert action.status_code == 201, action.text
        await step(ref, "action_planned")
        report = (
            await client.get(
                "/v1/reports/management-review", params={"system": "credit"}, headers=qm
            )
        ).json()
        assert report["actions"]["overdue_count"] == 1  # due in 2000, still planned
        done = await client.patch(
            f"/v1/actions/{action.json()['id']}",
            json={"status": "implemented", "evidence_links": ["https://git/pr/1"]},
            headers=qm,
        )
        assert done.status_code == 200, done.text
        await step(ref, "action_implemented")
        await step(ref, "effectiveness_review", reviewer="rita")
        await step(ref, "closed", review_result="confirmed")

        log = (await client.get("/v1/log", params={"subject": nc["id"]}, headers=qm)).json()
        raised_at = datetime.fromisoformat(nc["raised_at"])
        contained_at = next(
            datetime.fromisoformat(e["at"])
            for e in log
            if e["kind"] == "transition" and e["after"]["status"] == "contained"
        )
        closed_at = datetime.fromisoformat(log[-1]["at"])

        def utc(at: datetime) -> datetime:
            return at.replace(tzinfo=UTC) if at.tzinfo is None else at

        report = (
            await client.get(
                "/v1/reports/management-review", params={"system": "credit"}, headers=qm
            )
        ).json()
        ncs = report["nonconformities"]
        assert (ncs["raised"], ncs["closed"], ncs["open_at_end"]) == (1, 1, 0)
        assert ncs["raised_by_source"] == {"incident": 1}
        assert report["time_to_contain"]["mean_seconds"] == pytest.approx(
            (utc(contained_at) - utc(raised_at)).total_seconds(), abs=1e-3
        )
        assert report["time_to_close"]["mean_seconds"] == pytest.approx(
            (utc(closed_at) - utc(raised_at)).total_seconds(), abs=1e-3
        )
        assert (report["actions"]["planned"], report["actions"]["implemented"]) == (1, 1)
        assert report["actions"]["overdue_count"] == 0
        assert report["effectiveness"]["results"]["confirmed"] == 1

        pack = await client.get("/v1/evidence", params={"system": "credit"}, headers=qm)
        assert pack.status_code == 200 and pack.headers["x-evidence-chain-ok"] == "true"
