"""Registry commands: systems, reference datasets, objectives, ingest keys, tokens, apply.

They talk to a running registry over HTTP (``--url`` / ``WK_REGISTRY_URL``, default the
embedded platform's ``http://127.0.0.1:8000/registry``) with a user token (``--token`` /
``WK_TOKEN``) when the registry requires one. ``watchkeeper apply FILE.yaml`` declares a system
and its objectives as code: applying the same file again changes nothing; a changed objective
gets a new version whose reason is the file's (or "applied from FILE"). ``watchkeeper migrate``
runs a service's database migrations without starting it.
"""

from __future__ import annotations

import getpass
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import orjson
import typer
import yaml
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

__all__ = ["register"]

DEFAULT_URL = "http://127.0.0.1:8000/registry"
UPLOAD_CHUNK = 1 << 20

err = Console(stderr=True)
out = Console()

systems = typer.Typer(help="AI systems in the registry.", no_args_is_help=True)
reference = typer.Typer(help="Reference datasets (the baseline for drift).", no_args_is_help=True)
objectives = typer.Typer(help="Objectives (ISO/IEC 42001 6.2), versioned.", no_args_is_help=True)
keys = typer.Typer(help="Ingest API keys, one system each.", no_args_is_help=True)
tokens = typer.Typer(help="User tokens for the HTTP APIs.", no_args_is_help=True)

Url = Annotated[str, typer.Option("--url", envvar="WK_REGISTRY_URL", help="Registry base URL")]
Token = Annotated[
    str | None, typer.Option("--token", envvar="WK_TOKEN", help="User token (when auth is on)")
]
SystemId = Annotated[str, typer.Argument(help="AI system id")]
File = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


def _client(url: str, token: str | None, timeout: float | None = 60.0) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)


def _fail(response: httpx.Response) -> NoReturn:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    detail = body.get("detail", body) if isinstance(body, dict) else body
    err.print(f"[red]{response.request.method} {response.request.url.path}: {response.status_code}")
    if isinstance(detail, list):
        for item in detail:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                msg = str(item.get("msg", item))
                err.print(f"  {where}: {msg}" if where and where not in msg else f"  {msg}")
            else:
                err.print(f"  {item}")
    else:
        err.print(f"  {detail}")
    raise typer.Exit(1)


def _as_json(value: Any) -> Any:
    """``value`` with NaN and infinities as text ("nan", "inf"): JSON has no such numbers
    (httpx refuses them), and the registry refuses the text naming the field."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_json(v) for v in value]
    return value


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    if "json" in kwargs:
        kwargs["json"] = _as_json(kwargs["json"])
    try:
        response = client.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        err.print(f"[red]cannot reach the registry at {client.base_url}: {exc}")
        err.print(
            "  set --url or WK_REGISTRY_URL: the embedded platform (make demo / make up) serves "
            f"it at {DEFAULT_URL}; `make up-real` prints it (http://127.0.0.1:8001 by default)"
        )
        raise typer.Exit(2) from None
    if response.status_code >= 400:
        _fail(response)
    return response.json()


def _load(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        err.print(f"[red]{path}: not valid YAML/JSON: {exc}")
        raise typer.Exit(1) from None


def _print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title)
    for i, column in enumerate(columns):
        table.add_column(column, no_wrap=i == 0, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    out.print(table)


def _who(token: str | None, changed_by: str | None) -> str | None:
    """Who to name as ``changed_by``: nobody with a token (the server uses its subject)."""
    if token:
        return None
    return changed_by or os.environ.get("USER") or getpass.getuser()


ChangedBy = Annotated[
    str | None,
    typer.Option("--changed-by", help="Who makes the change, without a token (default: $USER)"),
]


# --- systems ---------------------------------------------------------------------------


@systems.command("create")
def systems_create(file: File, url: Url = DEFAULT_URL, token: Token = None) -> None:
    """Register the system described in FILE (YAML or JSON)."""
    with _client(url, token) as client:
        created = _call(client, "POST", "/v1/systems", json=_load(file))
    err.print(f"registered [bold]{created['id']}[/bold]")


@systems.command("list")
def systems_list(url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False) -> None:
    """List the registered systems."""
    with _client(url, token) as client:
        found = _call(client, "GET", "/v1/systems")
    if as_json:
        _print_json(found)
        return
    rows = [
        [s["id"], s["name"], s["task"], s["risk_level"], s["status"], s["owner"]] for s in found
    ]
    _table("AI systems", ["id", "name", "task", "risk", "status", "owner"], rows)


@systems.command("show")
def systems_show(system_id: SystemId, url: Url = DEFAULT_URL, token: Token = None) -> None:
    """The system's definition, current objectives, reference and ingest keys (JSON)."""
    with _client(url, token) as client:
        system = _call(client, "GET", f"/v1/systems/{system_id}")
        system["objectives"] = _call(client, "GET", f"/v1/systems/{system_id}/objectives")
        system["model_versions"] = _call(client, "GET", f"/v1/systems/{system_id}/model-versions")
        system["ingest_keys"] = _call(client, "GET", f"/v1/systems/{system_id}/ingest-keys")
    _print_json(system)


def apply(
    file: File,
    url: Url = DEFAULT_URL,
    token: Token = None,
    changed_by: ChangedBy = None,
) -> None:
    """Create or update a system and its objectives from FILE (monitoring as code).

    FILE holds ``system: {...}``, ``objectives: [...]`` and optionally ``reason`` (or a
    ``reason`` per objective). Re-applying an unchanged file changes nothing.
    """
    document = _load(file)
    if not isinstance(document, dict) or "system" not in document:
        err.print(f"[red]{file}: expected a mapping with 'system' (and 'objectives')")
        raise typer.Exit(1)
    who = _who(token, changed_by)
    if who is not None and "changed_by" not in document:
        document["changed_by"] = who
    with _client(url, token) as client:
        result = _call(client, "POST", "/v1/apply", params={"source": file.name}, json=document)
    system_id = document["system"].get("id", "?")
    err.print(f"system {system_id}: {result['system']}")
    for objective_id, outcome in result["objectives"].items():
        err.print(f"  objective {objective_id}: {outcome} (v{result['versions'][objective_id]})")
    _print_json(result)


systems.command("apply")(apply)


# --- reference datasets ----------------------------------------------------------------


def _chunks(path: Path, progress: Progress, task: Any) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(UPLOAD_CHUNK):
            progress.update(task, advance=len(chunk))
            yield chunk


@reference.command("upload")
def reference_upload(
    file: File,
    system: Annotated[str, typer.Option("--system", "-s", help="AI system id")],
    model_version: Annotated[
        str | None, typer.Option(help="Make it the reference of this model version")
    ] = None,
    current: Annotated[bool, typer.Option(help="Make it the current reference")] = True,
    file_format: Annotated[
        str | None, typer.Option("--format", help="csv or parquet (default: by extension)")
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Upload a CSV or Parquet reference dataset, streamed, with a progress bar."""
    size = file.stat().st_size
    params: dict[str, Any] = {"filename": file.name, "current": current}
    if model_version:
        params["model_version"] = model_version
    if file_format:
        params["format"] = file_format
    kind = "text/csv" if file.suffix.lower() == ".csv" else "application/vnd.apache.parquet"
    headers = {"Content-Type": kind, "Content-Length": str(size)}
    columns = [BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
    with (
        _client(url, token, timeout=None) as client,
        Progress(*columns, console=err, transient=True) as progress,
    ):
        task = progress.add_task("upload", total=size)
        uploaded = _call(
            client,
            "POST",
            f"/v1/systems/{system}/references",
            params=params,
            headers=headers,
            content=_chunks(file, progress, task),
        )
    state = "current" if uploaded["current"] else "stored"
    err.print(f"{file.name}: {uploaded['n_rows']} rows, profile {uploaded['hash']} ({state})")
    _print_json(uploaded)


@reference.command("list")
def reference_list(
    system_id: SystemId, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False
) -> None:
    """The system's uploaded reference datasets."""
    with _client(url, token) as client:
        found = _call(client, "GET", f"/v1/systems/{system_id}/references")
    if as_json:
        _print_json(found)
        return
    rows = [
        [r["hash"], r["filename"], r["n_rows"], r["model_version"], r["current"], r["uploaded_at"]]
        for r in found
    ]
    _table("reference datasets", ["hash", "file", "rows", "model", "current", "uploaded"], rows)


# --- objectives ------------------------------------------------------------------------


@objectives.command("create")
def objectives_create(
    system_id: SystemId,
    file: File,
    url: Url = DEFAULT_URL,
    token: Token = None,
    changed_by: ChangedBy = None,
) -> None:
    """Create the objective described in FILE (YAML or JSON) for the system."""
    body = _load(file)
    who = _who(token, changed_by)
    if who is not None and isinstance(body, dict):
        body.setdefault("changed_by", who)
    with _client(url, token) as client:
        created = _call(client, "POST", f"/v1/systems/{system_id}/objectives", json=body)
    err.print(f"objective {created['id']} v{created['version']} created")


@objectives.command("list")
def objectives_list(
    system_id: SystemId, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False
) -> None:
    """The system's objectives at their current versions."""
    with _client(url, token) as client:
        found = _call(client, "GET", f"/v1/systems/{system_id}/objectives")
    if as_json:
        _print_json(found)
        return
    rows = [
        [
            o["id"],
            o["version"],
            o["metric"],
            ",".join(f"{k}={v}" for k, v in o["parameters"].items()),
            f"{o['comparator']} {o['threshold']:g}",
            o["severity"],
            o["status"],
        ]
        for o in found
    ]
    columns = ["id", "v", "metric", "parameters", "objective", "severity", "status"]
    _table(f"objectives of {system_id}", columns, rows)


@objectives.command("history")
def objectives_history(
    system_id: SystemId,
    objective_id: Annotated[str, typer.Argument(help="Objective id")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Every version of an objective with who changed it, when and why."""
    with _client(url, token) as client:
        versions = _call(
            client, "GET", f"/v1/systems/{system_id}/objectives/{objective_id}/history"
        )
    if as_json:
        _print_json(versions)
        return
    rows = [
        [
            v["version"],
            v["changed_at"],
            v["changed_by"],
            v["change_reason"],
            f"{v['comparator']} {v['threshold']:g}",
            v["status"],
        ]
        for v in versions
    ]
    columns = ["v", "changed at", "by", "why", "objective", "status"]
    _table(f"history of {objective_id}", columns, rows)


# --- ingest keys -----------------------------------------------------------------------


@keys.command("create")
def keys_create(
    system_id: SystemId,
    name: Annotated[str, typer.Option(help="What the key is for")] = "",
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Create an ingest key for the system; the key is printed now and never again."""
    with _client(url, token) as client:
        created = _call(client, "POST", f"/v1/systems/{system_id}/ingest-keys", json={"name": name})
    err.print(f"ingest key {created['id']} for {system_id}: store it now, it is not shown again")
    sys.stdout.write(created["key"] + "\n")


@keys.command("list")
def keys_list(
    system_id: SystemId, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False
) -> None:
    """The system's ingest keys (never the keys themselves)."""
    with _client(url, token) as client:
        found = _call(client, "GET", f"/v1/systems/{system_id}/ingest-keys")
    if as_json:
        _print_json(found)
        return
    rows = [
        [k["id"], k["name"], k["prefix"] + "...", k["created_by"], k["active"], k["revoked_at"]]
        for k in found
    ]
    _table(f"ingest keys of {system_id}", ["id", "name", "key", "by", "active", "revoked"], rows)


@keys.command("revoke")
def keys_revoke(
    system_id: SystemId,
    key_id: Annotated[str, typer.Argument(help="Key id (from `keys list`)")],
    url: Url = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Revoke an ingest key; ingest refuses it once the registry topic says so."""
    with _client(url, token) as client:
        _call(client, "DELETE", f"/v1/systems/{system_id}/ingest-keys/{key_id}")
    err.print(f"revoked {key_id}")


# --- tokens ----------------------------------------------------------------------------


def _duration_s(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1:] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: use seconds or a number with s, m, h or d") from None


@tokens.command("issue")
def tokens_issue(
    subject: Annotated[str, typer.Option(help="Who the token is for (recorded as who)")],
    role: Annotated[str, typer.Option(help="admin, ml_engineer, quality_manager, sre or auditor")],
    ttl: Annotated[str, typer.Option(help="Lifetime: 3600, 90m, 12h, 30d")] = "12h",
    secret: Annotated[
        str | None,
        typer.Option(envvar="WK_AUTH_SECRET", help="The services' shared auth_secret"),
    ] = None,
) -> None:
    """Sign a user token with the shared secret (printed on stdout)."""
    from shared.auth import Role, issue_token

    if not secret:
        err.print("[red]give the services' auth_secret with --secret or WK_AUTH_SECRET")
        raise typer.Exit(1)
    try:
        the_role = Role(role)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise typer.BadParameter(f"role must be one of {roles}") from None
    try:
        token = issue_token(secret, subject, the_role, _duration_s(ttl))
    except ValueError as exc:
        err.print(f"[red]{exc}")
        raise typer.Exit(1) from None
    sys.stdout.write(token + "\n")


# --- migrations ------------------------------------------------------------------------


def migrate(
    service: Annotated[str, typer.Argument(help="registry, alerts, … (a service with migrations)")],
    database_url: Annotated[
        str | None,
        typer.Option(help="Database URL (default: the service's WK_<SERVICE>_DATABASE_URL)"),
    ] = None,
) -> None:
    """Apply a service's database migrations (services also apply them when they start)."""
    import importlib

    from shared.db import Database
    from shared.migrations import OUTBOX, MigrationChain, upgrade

    try:
        app_module = importlib.import_module(f"services.{service}.app")
        settings_module = importlib.import_module(f"services.{service}.settings")
    except ModuleNotFoundError:
        err.print(f"[red]no service {service!r}")
        raise typer.Exit(1) from None
    chain = getattr(app_module, "MIGRATIONS", None)
    if not isinstance(chain, MigrationChain):
        err.print(f"[red]{service} has no migrations (it creates its tables when it starts)")
        raise typer.Exit(1)
    url = database_url or settings_module.Settings().database_url
    db = Database(url)
    try:
        for each in (OUTBOX, chain):
            applied = upgrade(db.engine, each)
            done = f"applied {', '.join(applied)}" if applied else "up to date"
            err.print(f"{each.name}: {done}")
    finally:
        db.dispose()


def register(app: typer.Typer) -> None:
    """Add the registry commands to the ``watchkeeper`` CLI."""
    app.add_typer(systems, name="systems")
    app.add_typer(reference, name="reference")
    app.add_typer(objectives, name="objectives")
    app.add_typer(keys, name="keys")
    app.add_typer(tokens, name="tokens")
    app.command("apply")(apply)
    app.command("migrate")(migrate)
