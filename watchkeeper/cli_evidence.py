"""Evidence commands: ``watchkeeper evidence export`` downloads the evidence pack of a period
from a running alerts service, checks every file against the pack's manifest and reports the
hash chain's verification (exit 2 when the chain is broken; the pack is written all the same,
it is the evidence of the break)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import zipfile
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

__all__ = ["register"]

DEFAULT_URL = "http://127.0.0.1:8000/alerts"

err = Console(stderr=True)

evidence = typer.Typer(
    help="Evidence for auditors (ISO/IEC 42001): the evidence pack of a period.",
    no_args_is_help=True,
)


def _bound(value: str | None, option: str) -> str | None:
    """Refuse a bound the service would refuse, before asking it."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            date.fromisoformat(value)
        else:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO date (2026-03-31) or date-time (2026-03-31T12:00:00Z)",
            param_hint=option,
        ) from None
    return value


def _refused(response: httpx.Response) -> typer.Exit:
    response.read()
    try:
        detail: Any = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    err.print(f"[red]GET {response.request.url.path}: {response.status_code}")
    err.print(f"  {detail}")
    return typer.Exit(1)


def _check(path: Path) -> dict[str, Any]:
    """The pack's manifest, after checking every file it lists against its SHA-256."""
    try:
        with zipfile.ZipFile(path) as pack:
            manifest: dict[str, Any] = json.loads(pack.read("manifest.json"))
            for listed in manifest["files"]:
                found = hashlib.sha256(pack.read(listed["name"])).hexdigest()
                if found != listed["sha256"]:
                    raise ValueError(f"{listed['name']}: SHA-256 {found} != {listed['sha256']}")
            verification: dict[str, Any] = json.loads(pack.read("chain_verification.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        err.print(f"[red]the downloaded pack does not check out: {exc}")
        raise typer.Exit(1) from None
    manifest["chain_verification"] = verification
    return manifest


@evidence.command("export")
def export(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="The zip to write (default: the service's name)"),
    ] = None,
    system: Annotated[
        str | None, typer.Option("--system", help="AI system id (default: all systems)")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option("--from", help="ISO date or date-time, UTC (default: 90 days before --to)"),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--to", help="ISO date (that day included) or date-time (default: now)"),
    ] = None,
    url: Annotated[
        str, typer.Option("--url", envvar="WK_ALERTS_URL", help="Alerts base URL")
    ] = DEFAULT_URL,
    token: Annotated[
        str | None, typer.Option("--token", envvar="WK_TOKEN", help="User token (when auth is on)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON")] = False,
) -> None:
    """Download the evidence pack of a period (records, actions, reviews, log entries and the
    chain's verification, evaluations, objective versions, management review, manifest)."""
    params = {
        k: v
        for k, v in {
            "system": system,
            "from": _bound(start, "--from"),
            "to": _bound(end, "--to"),
        }.items()
        if v is not None
    }
    if output is not None and not output.parent.resolve().is_dir():
        raise typer.BadParameter(f"{output.parent} is not a directory", param_hint="--output")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    base = url.rstrip("/")
    fd, temporary = tempfile.mkstemp(
        prefix=".evidence-", suffix=".zip", dir=(output.parent if output else Path.cwd())
    )
    try:
        with (
            os.fdopen(fd, "wb") as sink,
            httpx.Client(base_url=base, headers=headers, timeout=300) as client,
            client.stream("GET", "/v1/evidence", params=params) as response,
        ):
            if response.status_code >= 400:
                raise _refused(response)
            name = response.headers.get("content-disposition", "").partition('filename="')[2]
            target = output or Path(name.rstrip('"') or "evidence.zip")
            total = int(response.headers.get("content-length", 0)) or None
            with Progress(
                TextColumn("[bold]evidence pack"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=err,
                transient=True,
            ) as progress:
                task = progress.add_task("download", total=total)
                for chunk in response.iter_bytes():
                    sink.write(chunk)
                    progress.update(task, advance=len(chunk))
        manifest = _check(Path(temporary))
        os.replace(temporary, target)
    except httpx.HTTPError as exc:
        err.print(f"[red]GET {base}/v1/evidence: {exc}")
        raise typer.Exit(1) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    verification = manifest["chain_verification"]
    if as_json:
        typer.echo(json.dumps(manifest, indent=2, sort_keys=True))
    else:
        size = target.stat().st_size
        err.print(
            f"wrote {target} ({size:,} bytes): {len(manifest['files'])} files, "
            "every SHA-256 of the manifest checked"
        )
    if verification["ok"]:
        err.print(f"[green]hash chain verified: {verification['entries']} entries")
        return
    err.print(
        f"[red]hash chain BROKEN at entry {verification['first_broken_seq']}: "
        f"{verification['reason']}"
    )
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add the evidence commands to the ``watchkeeper`` CLI."""
    app.add_typer(evidence, name="evidence")
