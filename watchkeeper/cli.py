"""The ``watchkeeper`` command: run the platform, its services, the demo, and tools."""

from __future__ import annotations

import asyncio
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import orjson
import typer
import uvicorn
from rich.console import Console

from .cli_alerts import register as register_alerts_commands
from .cli_evidence import register as register_evidence_commands
from .cli_registry import register as register_registry_commands

__all__ = ["app", "main"]

app = typer.Typer(help="Watchkeeper: continuous AI performance monitoring.", no_args_is_help=True)
register_registry_commands(app)
register_alerts_commands(app)
register_evidence_commands(app)
err = Console(stderr=True)


class Service(StrEnum):
    registry = "registry"
    ingest = "ingest"
    evaluator = "evaluator"
    alerts = "alerts"


@app.command()
def up(
    host: str = "127.0.0.1",
    port: int = 8000,
    data_dir: Annotated[Path, typer.Option(help="Where the SQLite databases live")] = Path(
        ".run/embedded"
    ),
    kafka: Annotated[
        bool,
        typer.Option(
            "--kafka",
            help="The real deployment: Kafka, PostgreSQL (KAFKA_BOOTSTRAP / DATABASE_URL, or "
            "started locally) and the four services as separate processes (make up-real)",
        ),
    ] = False,
    base_port: Annotated[
        int, typer.Option(help="With --kafka: registry's port; ingest +1, evaluator +2, alerts +3")
    ] = 8001,
    topic_prefix: Annotated[str, typer.Option(help="With --kafka: Kafka topic prefix")] = "wk.",
    state_dir: Annotated[
        Path | None, typer.Option(help="With --kafka: logs and pids (default .run/real)")
    ] = None,
) -> None:
    """Run all four services in one process on the in-process bus and SQLite (or, with
    --kafka, as separate processes on Kafka and PostgreSQL)."""
    if kafka:
        from .real import RealOptions, run_real

        options = RealOptions(base_port=base_port, host=host, topic_prefix=topic_prefix)
        if state_dir is not None:
            options.state_dir = state_dir.resolve()
        raise typer.Exit(run_real(options))

    from .embedded import EmbeddedOptions, create_embedded_app

    application = create_embedded_app(EmbeddedOptions.for_data_dir(data_dir))
    err.print(f"Watchkeeper embedded on http://{host}:{port}  (UI: /, docs: /<service>/docs)")
    from shared.serve import log_config

    uvicorn.run(application, host=host, port=port, log_level="info", log_config=log_config())


@app.command()
def down(
    servers: Annotated[
        bool, typer.Option(help="Also stop the local Kafka and PostgreSQL (data is kept)")
    ] = False,
    state_dir: Annotated[Path | None, typer.Option(help="As given to up --kafka")] = None,
) -> None:
    """Stop what `up --kafka` left running (make down-real)."""
    from .real import REPO_ROOT
    from .real import down as stop

    raise typer.Exit(stop(state_dir or REPO_ROOT / ".run" / "real", servers=servers))


@app.command()
def demo(
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds and print a summary")
    ] = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    rate: Annotated[int, typer.Option(help="Predictions per second")] = 50,
    degrade_after: Annotated[
        float, typer.Option(help="Seconds before the model starts to degrade")
    ] = 25.0,
    data_dir: Path = Path(".run/demo"),
) -> None:
    """Run the embedded platform and stream a synthetic AI system that degrades midway."""
    from .demo import demo_options, run_demo

    options = demo_options(data_dir)
    try:
        summary = asyncio.run(
            run_demo(
                host=host,
                port=port,
                duration_s=duration,
                options=options,
                rate=rate,
                degrade_after_s=degrade_after,
            )
        )
    except KeyboardInterrupt:
        err.print("stopped")
        raise typer.Exit(0) from None
    err.print(
        f"Summary: {summary.events} events, {summary.evaluations} evaluations, "
        f"{summary.nonconformities} nonconformities"
    )
    sys.stdout.write(orjson.dumps(summary.as_json()).decode() + "\n")


@app.command()
def serve(service: Service) -> None:
    """Run one service in this process, configured by its WK_<SERVICE>_* variables."""
    from shared.serve import serve as run

    if service is Service.registry:
        from services.registry.app import create_app as create_registry
        from services.registry.settings import Settings as RegistrySettings

        registry_settings = RegistrySettings()
        run(create_registry(registry_settings), registry_settings)
    elif service is Service.ingest:
        from services.ingest.app import create_app as create_ingest
        from services.ingest.settings import Settings as IngestSettings

        ingest_settings = IngestSettings()
        run(create_ingest(ingest_settings), ingest_settings)
    elif service is Service.evaluator:
        from services.evaluator.app import create_app as create_evaluator
        from services.evaluator.settings import Settings as EvaluatorSettings

        evaluator_settings = EvaluatorSettings()
        run(create_evaluator(evaluator_settings), evaluator_settings)
    else:
        from services.alerts.app import create_app as create_alerts
        from services.alerts.settings import Settings as AlertsSettings

        alerts_settings = AlertsSettings()
        run(create_alerts(alerts_settings), alerts_settings)


@app.command()
def schemas(
    check: Annotated[bool, typer.Option(help="Fail if the published file is stale")] = False,
) -> None:
    """Write the JSON Schemas of every bus contract to shared/schemas/contracts.json."""
    from shared.jsonschema import SCHEMA_FILE, render

    wanted = render()
    if check:
        current = SCHEMA_FILE.read_bytes() if SCHEMA_FILE.exists() else b""
        if current != wanted:
            err.print(f"{SCHEMA_FILE} is stale: run `make schemas`")
            raise typer.Exit(1)
        err.print(f"{SCHEMA_FILE} is up to date")
        return
    SCHEMA_FILE.parent.mkdir(parents=True, exist_ok=True)
    SCHEMA_FILE.write_bytes(wanted)
    err.print(f"wrote {SCHEMA_FILE}")


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
