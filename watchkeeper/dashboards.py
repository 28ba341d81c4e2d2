"""Grafana dashboards as code: the fleet overview, one AI system, and the platform's health.

Built with the typed builders of ``grafana-foundation-sdk`` (a development dependency) and
written to ``deploy/grafana/dashboards/*.json``, which Grafana's file provisioning loads.
``python -m watchkeeper.dashboards`` (``make dashboards``) writes them; ``--check`` (in
``make lint``) fails when a file differs from what this module builds. Every panel's
description is the question it answers (docs/operations.md lists them), and
``tests/deploy/test_prometheus.py`` runs every target against a real Prometheus scraping the
four services.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from grafana_foundation_sdk.builders import (
    bargauge,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders.common import TableSortByFieldState as TableSortBy
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from shared.catalog import CATALOG, Family

__all__ = ["DASHBOARDS", "OUT_DIR", "build", "main", "render"]

OUT_DIR = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "dashboards"
PROMETHEUS = model.DataSourceRef(type_val="prometheus", uid="prometheus")
"""The datasource deploy/grafana/provisioning/datasources/prometheus.yaml provisions."""
RATE = "$__rate_interval"
DRIFT_METRICS = "|".join(sorted(m.id for m in CATALOG.values() if m.family is Family.DRIFT))
TAGS = ["watchkeeper"]

P = TypeVar("P", timeseries.Panel, stat.Panel, table.Panel, statetimeline.Panel, bargauge.Panel)


def query(expr: str, legend: str = "", *, instant: bool = False) -> prom.Dataquery:
    """One PromQL target (``instant``: one value per series, shown as a table row)."""
    target = prom.Dataquery().expr(expr).datasource(PROMETHEUS)
    if legend:
        target = target.legend_format(legend)
    if instant:
        target = target.instant().format(PromQueryFormat.TABLE)
    return target


def panel(
    builder: P,
    title: str,
    question: str,
    targets: Sequence[prom.Dataquery],
    *,
    unit: str = "short",
    span: int = 12,
    height: int = 8,
) -> P:
    """A panel answering ``question`` (its description) with ``targets`` (refIds A, B, …)."""
    built = builder.title(title).description(question).datasource(PROMETHEUS).unit(unit)
    for ref, target in zip("ABCDEFGH", targets, strict=False):
        built = built.with_target(target.ref_id(ref))
    return built.span(span).height(height)


def graph(
    title: str,
    question: str,
    targets: Sequence[prom.Dataquery],
    *,
    unit: str = "short",
    span: int = 12,
) -> timeseries.Panel:
    """A time series panel."""
    return panel(timeseries.Panel(), title, question, targets, unit=unit, span=span)


def bars(
    title: str, question: str, targets: Sequence[prom.Dataquery], *, span: int = 12
) -> bargauge.Panel:
    """A horizontal bar gauge panel."""
    return panel(
        bargauge.Panel().orientation(common.VizOrientation.HORIZONTAL),
        title,
        question,
        targets,
        span=span,
    )


def dashed_threshold(builder: timeseries.Panel, ref: str) -> timeseries.Panel:
    """Draw query ``ref`` as a dashed red line: a threshold, not a measurement."""
    return builder.override_by_query(
        ref,
        [
            model.DynamicConfigValue("custom.lineStyle", {"fill": "dash", "dash": [10, 10]}),
            model.DynamicConfigValue("color", {"mode": "fixed", "fixedColor": "red"}),
        ],
    )


def link(title: str, url: str, tooltip: str) -> dash.DashboardLink:
    return (
        dash.DashboardLink(title)
        .type(model.DashboardLinkType.LINK)
        .url(url)
        .tooltip(tooltip)
        .target_blank(True)
        .keep_time(False)
        .include_vars(False)
    )


def dashboard(uid: str, title: str, description: str) -> dash.Dashboard:
    return (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .link(
            dash.DashboardLink("Watchkeeper")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags(TAGS)
            .as_dropdown(True)
            .keep_time(True)
        )
    )


# --- the fleet overview ---------------------------------------------------------------------


OBJECTIVE_STATE = "max by (system, objective) (watchkeeper_objective_state)"
"""Each objective's state, one series across evaluator instances: 2 breached, 1 met, 0 no
verdict yet (an instance not owning the system's partition reports 0)."""
BREACHED = f"{OBJECTIVE_STATE} == 2"

SYSTEM_STATE = "\n".join(
    [
        f'label_replace(max by (system) ({OBJECTIVE_STATE}) == 2, "state", "breached", "", "")',
        f"or on (system) label_replace(min by (system) ({OBJECTIVE_STATE}) == 0, "
        '"state", "insufficient_data", "", "")',
        f"or on (system) label_replace(min by (system) ({OBJECTIVE_STATE}), "
        '"state", "met", "", "")',
    ]
)
"""One series per system: its worst objective state (breached, then insufficient data, then
met), so each system is counted once."""

SYSTEM_LINK = "/d/watchkeeper-system/?var-system=${__data.fields.system}"


def fleet() -> dash.Dashboard:
    ncs = "max by (system, classification, state) (watchkeeper_nonconformities_open)"
    return (
        dashboard(
            "watchkeeper-fleet",
            "Watchkeeper · Fleet overview",
            "Every monitored AI system at a glance: objective states, breaches, open "
            "nonconformities, ingest traffic and data freshness.",
        )
        .with_row(dash.Row("Objectives"))
        .with_panel(
            bars(
                "Systems by state",
                "How many AI systems have a breached objective, how many lack data for a "
                "verdict, and how many meet every objective?",
                [query(f"count by (state) (\n{SYSTEM_STATE}\n)", "{{state}}", instant=True)],
                span=6,
            )
        )
        .with_panel(
            panel(
                stat.Panel(),
                "Registered systems",
                "How many AI systems are registered, active and retired?",
                [query("max by (status) (watchkeeper_registry_systems)", "{{status}}")],
                span=4,
            )
        )
        .with_panel(
            panel(
                stat.Panel(),
                "Objectives breached",
                "How many objectives are breached right now (the last verdict, kept across "
                "data gaps)?",
                [query(f"sum({OBJECTIVE_STATE} == bool 2)")],
                span=4,
            ).thresholds(
                dash.ThresholdsConfig()
                .mode(model.ThresholdsMode.ABSOLUTE)
                .steps([model.Threshold(None, "green"), model.Threshold(1, "red")])
            )
        )
        .with_panel(
            panel(
                table.Panel(),
                "Breached objectives",
                "Which objectives are breached, with their newest value and threshold? (Click "
                "a system to open its dashboard.)",
                [
                    query(
                        "max by (system, objective, metric) (watchkeeper_objective_value)\n"
                        f"and on (system, objective) ({BREACHED})",
                        instant=True,
                    ),
                    query(
                        "max by (system, objective, metric) (watchkeeper_objective_threshold)\n"
                        f"and on (system, objective) ({BREACHED})",
                        instant=True,
                    ),
                ],
                span=10,
            )
            .with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
            .data_links(
                [
                    dash.DashboardLink("Open ${__data.fields.system}").url(
                        SYSTEM_LINK + "&var-objective=${__data.fields.objective}"
                    )
                ]
            )
        )
        .with_row(dash.Row("Nonconformities"))
        .with_panel(
            bars(
                "Open nonconformities by classification",
                "How many nonconformities are open, by classification (major, minor, observation)?",
                [query(f"sum by (classification) ({ncs})", "{{classification}}", instant=True)],
                span=8,
            )
        )
        .with_panel(
            bars(
                "Open nonconformities by state",
                "Where in the clause 10.2 lifecycle are the open nonconformities (raised, "
                "triaged, … effectiveness review)?",
                [query(f"sum by (state) ({ncs})", "{{state}}", instant=True)],
                span=8,
            )
        )
        .with_panel(
            panel(
                stat.Panel(),
                "Overdue corrective actions",
                "How many corrective actions are past their due date and not implemented?",
                [query("sum(max by (system) (watchkeeper_corrective_actions_overdue))")],
                span=8,
            )
        )
        .with_row(dash.Row("Ingest"))
        .with_panel(
            graph(
                "Events accepted per second, by system",
                "How much traffic does each AI system send (predictions and outcomes "
                "acknowledged by the bus)?",
                [
                    query(
                        f"sum by (system) (rate(watchkeeper_ingest_events_accepted_total[{RATE}]))",
                        "{{system}}",
                    )
                ],
                unit="reqps",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Ingest answers per second, by status",
                "Is ingest refusing requests: 400/422 bad events, 401/403 keys, 413 size, 429 "
                "rate limits, 503 bus or duplicate store down?",
                [
                    query(
                        f"sum by (status) (rate(watchkeeper_ingest_requests_total[{RATE}]))",
                        "{{status}}",
                    )
                ],
                unit="reqps",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Events rejected per second, by system",
                "Which systems send events that fail validation against their schema?",
                [
                    query(
                        "sum by (system, kind) (rate(watchkeeper_ingest_events_rejected_total"
                        f"[{RATE}]))",
                        "{{system}} {{kind}}",
                    )
                ],
                unit="reqps",
                span=8,
            )
        )
        .with_row(dash.Row("Freshness"))
        .with_panel(
            panel(
                table.Panel(),
                "Freshness, worst first",
                "Which systems have gone quiet: seconds since ingest last accepted one of their "
                "events, and how far behind the wall clock their event-time watermark is?",
                [
                    query(
                        "sort_desc(min by (system) (watchkeeper_ingest_seconds_since_last_event))",
                        instant=True,
                    ),
                    query(
                        "max by (system) (watchkeeper_evaluator_watermark_lag_seconds)",
                        instant=True,
                    ),
                ],
                unit="s",
                span=12,
            )
            .with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
            .with_transformation(
                model.DataTransformerConfig(
                    id_val="organize",
                    options={
                        "excludeByName": {"Time": True},
                        "renameByName": {
                            "Value #A": "seconds since last event",
                            "Value #B": "watermark lag",
                        },
                    },
                )
            )
            .sort_by([TableSortBy().display_name("seconds since last event").desc(True)])
            .data_links([dash.DashboardLink("Open ${__data.fields.system}").url(SYSTEM_LINK)])
        )
        .with_panel(
            graph(
                "Evaluations per second, by status",
                "Is the evaluator judging windows, and how many end in breach, insufficient "
                "data or error?",
                [
                    query(
                        f"sum by (status) (rate(watchkeeper_evaluations_total[{RATE}]))",
                        "{{status}}",
                    )
                ],
                unit="ops",
                span=12,
            )
        )
    )


# --- one AI system --------------------------------------------------------------------------

SYS = 'system="$system"'
OBJ = 'objective=~"$objective"'


def ai_system() -> dash.Dashboard:
    drift = (
        f'max by (system, objective, metric) (watchkeeper_objective_value{{{SYS}, metric=~"'
        f'{DRIFT_METRICS}"}})\n* on (system, objective) group_left (feature)\n'
        f"max by (system, objective, feature) (watchkeeper_objective_info{{{SYS}}})"
    )
    quantiles = [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")]
    alerts_links: list[Builder[model.DashboardLink]] = [
        link(
            "Nonconformities of ${system} (alerts UI)",
            "${alerts_url}/?system=${system}",
            "The alerts service's queue of this system's nonconformity records",
        ),
        link(
            "${system} in the alerts UI",
            "${alerts_url}/systems/${system}",
            "The alerts service's page of this system: its objectives' evidence charts",
        ),
    ]
    return (
        dashboard(
            "watchkeeper-system",
            "Watchkeeper · AI system",
            "One AI system: each objective's value per window against its threshold, drift "
            "per feature, labels, traffic, freshness and its nonconformities.",
        )
        .with_variable(
            dash.QueryVariable("system")
            .label("AI system")
            .datasource(PROMETHEUS)
            .query("label_values(watchkeeper_objective_state, system)")
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(model.VariableSort.ALPHABETICAL_ASC)
        )
        .with_variable(
            dash.QueryVariable("objective")
            .label("Objective")
            .datasource(PROMETHEUS)
            .query('label_values(watchkeeper_objective_state{system="$system"}, objective)')
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(model.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
        )
        .with_variable(
            dash.TextBoxVariable("alerts_url")
            .label("Alerts UI")
            .description("Base URL of the alerts service, for the links to its records")
            .default_value("http://localhost:8004")
        )
        .link(alerts_links[0])
        .link(alerts_links[1])
        .with_row(dash.Row("Objectives"))
        .with_panel(
            panel(
                statetimeline.Panel(),
                "Objective state",
                "Is each objective met, breached, or without data for a verdict, and since "
                "when? (A data gap keeps the last verdict.)",
                [
                    query(
                        f"max by (objective) (watchkeeper_objective_state{{{SYS}, {OBJ}}})",
                        "{{objective}}",
                    )
                ],
                span=24,
                height=6,
            ).mappings(
                [
                    model.ValueMap(
                        {
                            "0": model.ValueMappingResult(
                                text="insufficient data", color="text", index=0
                            ),
                            "1": model.ValueMappingResult(text="met", color="green", index=1),
                            "2": model.ValueMappingResult(text="breached", color="red", index=2),
                        }
                    )
                ]
            )
        )
        .with_panel(
            dashed_threshold(
                graph(
                    "$objective: value per window and threshold",
                    "Where is the objective's metric, window by window, against its threshold?",
                    [
                        query(
                            "max by (metric) (watchkeeper_objective_value"
                            f'{{{SYS}, objective="$objective"}})',
                            "{{metric}}",
                        ),
                        query(
                            "max by (metric) (watchkeeper_objective_threshold"
                            f'{{{SYS}, objective="$objective"}})',
                            "threshold",
                        ),
                    ],
                ),
                "B",
            )
            .line_interpolation(common.LineInterpolation.STEP_AFTER)
            .repeat("objective")
            .repeat_direction("h")
            .max_per_row(2)
        )
        .with_panel(
            graph(
                "Windows evaluated, by status",
                "How many windows does each objective get judged in, and how many end in "
                "pass, breach, insufficient data or error?",
                [
                    query(
                        "sum by (objective, status) (increase("
                        f"watchkeeper_objective_evaluations_total{{{SYS}, {OBJ}}}[{RATE}]))",
                        "{{objective}} {{status}}",
                    )
                ],
                span=12,
            ).draw_style(common.GraphDrawStyle.BARS)
        )
        .with_row(dash.Row("Drift"))
        .with_panel(
            graph(
                "Drift per feature",
                "Which features have drifted from the reference dataset, and by how much "
                "(each drift objective's newest value)?",
                [query(drift, "{{feature}} ({{metric}}, {{objective}})")],
                span=24,
            ).line_interpolation(common.LineInterpolation.STEP_AFTER)
        )
        .with_row(dash.Row("Labels"))
        .with_panel(
            graph(
                "Label coverage",
                "What share of predictions has its ground-truth outcome: per label objective "
                "of the system (newest window), and over the last hour of joins?",
                [
                    query(
                        f"max by (objective) (watchkeeper_objective_label_coverage_ratio{{{SYS}}})",
                        "{{objective}}",
                    ),
                    query(
                        f"sum(increase(watchkeeper_evaluator_labelled_predictions_total{{{SYS}}}"
                        "[1h]))\n/ sum(increase(watchkeeper_evaluator_received_events_total"
                        f'{{{SYS}, kind="prediction"}}[1h]))',
                        "joins per prediction (1h)",
                    ),
                ],
                unit="percentunit",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Label delay",
                "How long after a prediction does its outcome arrive?",
                [
                    query(
                        f"histogram_quantile({q}, sum by (le) (rate("
                        f"watchkeeper_evaluator_label_delay_seconds_bucket{{{SYS}}}[{RATE}])))",
                        name,
                    )
                    for q, name in quantiles
                ],
                unit="s",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Events not used, by reason",
                "Are events going unused: duplicates, outcomes past the label horizon, "
                "outcomes whose prediction never came?",
                [
                    query(
                        "sum by (kind, reason) (rate(watchkeeper_evaluator_dropped_events_total"
                        f"{{{SYS}}}[{RATE}]))",
                        "{{kind}} {{reason}}",
                    )
                ],
                unit="reqps",
                span=8,
            )
        )
        .with_row(dash.Row("Traffic"))
        .with_panel(
            graph(
                "Volume",
                "How many predictions and outcomes does the system send, and does the "
                "evaluator read them all?",
                [
                    query(
                        "sum by (kind) (rate(watchkeeper_ingest_events_accepted_total"
                        f"{{{SYS}}}[{RATE}]))",
                        "accepted {{kind}}",
                    ),
                    query(
                        "sum by (kind) (rate(watchkeeper_evaluator_received_events_total"
                        f"{{{SYS}}}[{RATE}]))",
                        "evaluated {{kind}}",
                    ),
                ],
                unit="reqps",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Model latency",
                "How long does the model take to answer (the latency_ms its events report)?",
                [
                    query(
                        f"histogram_quantile({q}, sum by (le) (rate("
                        "watchkeeper_evaluator_prediction_latency_seconds_bucket"
                        f"{{{SYS}}}[{RATE}])))",
                        name,
                    )
                    for q, name in quantiles
                ],
                unit="s",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Refused, duplicate and rate-limited events",
                "Is ingest refusing this system's events, and why?",
                [
                    query(
                        "sum by (reason) (rate(watchkeeper_ingest_events_rejected_total"
                        f"{{{SYS}}}[{RATE}]))",
                        "rejected: {{reason}}",
                    ),
                    query(
                        f"sum(rate(watchkeeper_ingest_events_duplicate_total{{{SYS}}}[{RATE}]))",
                        "duplicate",
                    ),
                    query(
                        f"sum(rate(watchkeeper_ingest_rate_limited_events_total{{{SYS}}}[{RATE}]))",
                        "rate limited",
                    ),
                ],
                unit="reqps",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Late and future events",
                "Do predictions arrive for windows already closed (late), or with event "
                "times too far ahead (refused)?",
                [
                    query(
                        f"sum(rate(watchkeeper_evaluator_late_predictions_total{{{SYS}}}[{RATE}]))",
                        "late predictions",
                    ),
                    query(
                        "sum by (kind, reason) (rate(watchkeeper_evaluator_refused_events_total"
                        f"{{{SYS}}}[{RATE}]))",
                        "refused {{kind}} ({{reason}})",
                    ),
                ],
                unit="reqps",
                span=12,
            )
        )
        .with_panel(
            graph(
                "Freshness",
                "How long since the system's last event reached ingest, and how far behind "
                "the wall clock is its event-time watermark?",
                [
                    query(
                        f"min(watchkeeper_ingest_seconds_since_last_event{{{SYS}}})",
                        "since last event",
                    ),
                    query(
                        f"max by (stream) (watchkeeper_evaluator_watermark_lag_seconds{{{SYS}}})",
                        "watermark lag ({{stream}})",
                    ),
                ],
                unit="s",
                span=12,
            )
        )
        .with_row(dash.Row("Nonconformities"))
        .with_panel(
            panel(
                table.Panel(),
                "Open nonconformities",
                "Which nonconformities of this system are open, by classification and "
                "lifecycle state? (The links open the records.)",
                [
                    query(
                        "max by (classification, state) (watchkeeper_nonconformities_open"
                        f"{{{SYS}}})",
                        instant=True,
                    )
                ],
                span=12,
            ).links(alerts_links)
        )
        .with_panel(
            graph(
                "Nonconformity changes",
                "What happened to this system's nonconformities: raised, occurrences added, "
                "cleared, triaged, closed?",
                [
                    query(
                        "sum by (change) (increase(watchkeeper_nonconformity_changes_total"
                        f"{{{SYS}}}[{RATE}]))",
                        "{{change}}",
                    )
                ],
                span=12,
            )
            .draw_style(common.GraphDrawStyle.BARS)
            .links(alerts_links)
        )
    )


# --- the platform's health ------------------------------------------------------------------

JOB = 'job=~"$job"'
HTTP = "watchkeeper_http_requests_total"


def platform() -> dash.Dashboard:
    def quantile(metric: str, by: str, q: float) -> str:
        return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket[{RATE}])))"

    return (
        dashboard(
            "watchkeeper-platform",
            "Watchkeeper · Platform health",
            "The four services as software: HTTP latency and errors, consumer lag, dead "
            "letters, outbox backlogs, the evaluator's checkpoints and state, processes.",
        )
        .with_variable(
            dash.QueryVariable("job")
            .label("Scrape job")
            .datasource(PROMETHEUS)
            .query("label_values(watchkeeper_http_requests_total, job)")
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
        )
        .with_row(dash.Row("HTTP"))
        .with_panel(
            graph(
                "Requests per second, by service and status",
                "How much HTTP traffic does each service answer, and with which statuses?",
                [
                    query(
                        f"sum by (service, status) (rate({HTTP}[{RATE}]))",
                        "{{service}} {{status}}",
                    )
                ],
                unit="reqps",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Server error ratio, by service",
                "What share of each service's answers are 5xx (0 when none)?",
                [
                    query(
                        f'(sum by (service) (rate({HTTP}{{status=~"5.."}}[{RATE}]))\n'
                        f" or 0 * sum by (service) (rate({HTTP}[{RATE}])))\n"
                        f"/ sum by (service) (rate({HTTP}[{RATE}]))",
                        "{{service}}",
                    )
                ],
                unit="percentunit",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Request latency p99, by service",
                "How long do the slowest 1 % of each service's requests take?",
                [
                    query(
                        quantile("watchkeeper_http_request_duration_seconds", "service", 0.99),
                        "{{service}}",
                    )
                ],
                unit="s",
                span=8,
            )
        )
        .with_panel(
            panel(
                table.Panel(),
                "Slowest routes (p99, last hour)",
                "Which route templates are slowest?",
                [
                    query(
                        "topk(10, histogram_quantile(0.99, sum by (service, route, method, le) "
                        "(rate(watchkeeper_http_request_duration_seconds_bucket[1h]))))",
                        instant=True,
                    )
                ],
                unit="s",
                span=12,
            )
        )
        .with_panel(
            graph(
                "Ingest produce latency",
                "How long does Kafka take to acknowledge a request's events (p50, p99)?",
                [
                    query(
                        f"histogram_quantile({q}, sum by (le) (rate("
                        f"watchkeeper_ingest_produce_seconds_bucket[{RATE}])))",
                        f"p{round(q * 100)}",
                    )
                    for q in (0.5, 0.99)
                ],
                unit="s",
                span=12,
            )
        )
        .with_row(dash.Row("Streams"))
        .with_panel(
            graph(
                "Consumer lag, by group and topic",
                "Are the consumer groups keeping up: records written but not yet consumed?",
                [
                    query(
                        "sum by (group, topic) (watchkeeper_consumer_lag_records)",
                        "{{group}} {{topic}}",
                    )
                ],
                span=12,
            )
        )
        .with_panel(
            graph(
                "Consumer lag, by partition",
                "Is the lag on one partition (one hot system, one slow instance) or everywhere?",
                [
                    query(
                        "max by (group, topic, partition) (watchkeeper_consumer_lag_records)",
                        "{{group}} {{topic}}/{{partition}}",
                    )
                ],
                span=12,
            )
        )
        .with_panel(
            graph(
                "Dead-lettered records",
                "Which service put records on the DLQ, from which topic?",
                [
                    query(
                        "sum by (service, source_topic) (increase("
                        f"watchkeeper_dlq_records_total[{RATE}]))",
                        "{{service}} ← {{source_topic}}",
                    )
                ],
                span=8,
            ).draw_style(common.GraphDrawStyle.BARS)
        )
        .with_panel(
            graph(
                "Outbox backlog",
                "How many derived records (snapshots, evaluations, nonconformity changes) "
                "wait to be published, and how fast are they published?",
                [
                    query(
                        "max by (service) (watchkeeper_outbox_pending_records)",
                        "{{service}} waiting",
                    ),
                    query(
                        "sum by (service) (rate("
                        f"watchkeeper_outbox_published_records_total[{RATE}]))",
                        "{{service}} published/s",
                    ),
                ],
                span=8,
            )
        )
        .with_panel(
            graph(
                "Oldest unpublished outbox record",
                "How long has the oldest waiting record been waiting (relay stuck, Kafka down)?",
                [
                    query(
                        "max by (service) (watchkeeper_outbox_oldest_age_seconds)",
                        "{{service}}",
                    )
                ],
                unit="s",
                span=8,
            )
        )
        .with_row(dash.Row("Evaluator"))
        .with_panel(
            graph(
                "Checkpoint and batch time",
                "How long does the evaluator take to checkpoint its state with the results "
                "(p99), and to apply a polled batch?",
                [
                    query(
                        quantile("watchkeeper_evaluator_checkpoint_seconds", "instance", 0.99),
                        "checkpoint p99 {{instance}}",
                    ),
                    query(
                        quantile("watchkeeper_evaluator_batch_seconds", "instance", 0.99),
                        "batch p99 {{instance}}",
                    ),
                ],
                unit="s",
                span=8,
            )
        )
        .with_panel(
            graph(
                "Window state",
                "How many windows does each instance hold (open: accumulating; label: closed, "
                "awaiting late labels), and how many bytes does their checkpoint take?",
                [
                    query(
                        "sum by (instance, kind) (watchkeeper_evaluator_window_state_bytes)",
                        "{{kind}} bytes {{instance}}",
                    ),
                    query(
                        "sum by (instance, kind) (watchkeeper_evaluator_window_states)",
                        "{{kind}} windows {{instance}}",
                    ),
                ],
                unit="bytes",
                span=8,
            ).override_by_query("B", [model.DynamicConfigValue("unit", "short")])
        )
        .with_panel(
            graph(
                "Partitions, held outcomes, checkpoint age",
                "How many stream partitions does each instance own, how many outcomes wait "
                "for their predictions, and how long ago was the last checkpoint?",
                [
                    query(
                        "sum by (instance) (watchkeeper_evaluator_partitions)",
                        "partitions {{instance}}",
                    ),
                    query(
                        "sum by (instance) (watchkeeper_evaluator_outcomes_held)",
                        "outcomes held {{instance}}",
                    ),
                    query(
                        "time() - watchkeeper_evaluator_last_checkpoint_timestamp_seconds",
                        "seconds since checkpoint {{instance}}",
                    ),
                ],
                span=8,
            )
        )
        .with_row(dash.Row("Notifications"))
        .with_panel(
            graph(
                "Notification deliveries",
                "Do nonconformity notifications reach their receivers: sent, failed (retried) "
                "or dead (given up)?",
                [
                    query(
                        "sum by (receiver, outcome) (increase("
                        f"watchkeeper_alert_notifications_total[{RATE}]))",
                        "{{receiver}} {{outcome}}",
                    )
                ],
                span=12,
            ).draw_style(common.GraphDrawStyle.BARS)
        )
        .with_panel(
            graph(
                "Notifications waiting",
                "How many notifications wait for a (next) delivery attempt, per receiver?",
                [
                    query(
                        "max by (receiver) (watchkeeper_alert_notifications_pending)",
                        "{{receiver}}",
                    )
                ],
                span=12,
            )
        )
        .with_row(dash.Row("Registry"))
        .with_panel(
            graph(
                "Reference dataset uploads",
                "Are reference uploads to the registry stored, or refused as invalid or too large?",
                [
                    query(
                        "sum by (outcome) (increase("
                        f"watchkeeper_registry_reference_uploads_total[{RATE}]))",
                        "{{outcome}}",
                    )
                ],
                span=24,
            ).draw_style(common.GraphDrawStyle.BARS)
        )
        .with_row(dash.Row("Processes"))
        .with_panel(
            graph(
                "Targets up",
                "Is Prometheus reaching every service's /metrics?",
                [query(f"up{{{JOB}}}", "{{instance}}")],
                span=6,
            )
        )
        .with_panel(
            graph(
                "Resident memory",
                "How much memory does each process hold?",
                [query(f"process_resident_memory_bytes{{{JOB}}}", "{{instance}}")],
                unit="bytes",
                span=6,
            )
        )
        .with_panel(
            graph(
                "CPU",
                "How many CPU cores does each process use?",
                [query(f"rate(process_cpu_seconds_total{{{JOB}}}[{RATE}])", "{{instance}}")],
                span=6,
            )
        )
        .with_panel(
            graph(
                "Open file descriptors",
                "Is a process running out of file descriptors (sockets, database connections)?",
                [
                    query(f"process_open_fds{{{JOB}}}", "{{instance}}"),
                    query(f"process_max_fds{{{JOB}}}", "limit {{instance}}"),
                ],
                span=6,
            )
        )
        .with_panel(
            graph(
                "Python garbage collections",
                "Is the garbage collector busy (a process allocating too much)?",
                [
                    query(
                        "sum by (instance, generation) (rate("
                        f"python_gc_collections_total{{{JOB}}}[{RATE}]))",
                        "{{instance}} gen {{generation}}",
                    )
                ],
                unit="ops",
                span=24,
            )
        )
    )


DASHBOARDS: dict[str, Callable[[], dash.Dashboard]] = {
    "fleet": fleet,
    "ai-system": ai_system,
    "platform": platform,
}
"""File stem -> the dashboard's builder."""


def build(name: str) -> model.Dashboard:
    """The dashboard model, with panel ids numbered in layout order."""
    built = DASHBOARDS[name]().build()
    for number, item in enumerate(built.panels or [], start=1):
        item.id_val = number
    return built


def render(name: str) -> str:
    """The provisioned JSON of a dashboard (sorted keys: a stable diff)."""
    return json.dumps(build(name), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m watchkeeper.dashboards", description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="directory of the JSON files")
    parser.add_argument(
        "--check", action="store_true", help="fail when a file differs from what is built"
    )
    args = parser.parse_args(argv)
    out: Path = args.out
    expected = {f"{name}.json": render(name) for name in DASHBOARDS}
    if args.check:
        stale = sorted(
            name
            for name, text in expected.items()
            if not (out / name).is_file() or (out / name).read_text() != text
        )
        extra = sorted(p.name for p in out.glob("*.json") if p.name not in expected)
        for name in stale:
            print(f"{out / name} is stale: run `make dashboards`", file=sys.stderr)
        for name in extra:
            print(f"{out / name} is not built by watchkeeper.dashboards", file=sys.stderr)
        return 1 if stale or extra else 0
    out.mkdir(parents=True, exist_ok=True)
    for name in sorted(p.name for p in out.glob("*.json") if p.name not in expected):
        (out / name).unlink()
    for name, text in expected.items():
        (out / name).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
