"""docs/metrics.md lists exactly the metric families the platform exports (the embedded root
/metrics, all four services' registries, running)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.deployments import embedded_deployment

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


async def test_the_metrics_reference_lists_every_exported_family(tmp_path: Path) -> None:
    async with embedded_deployment(tmp_path) as deployment, httpx.AsyncClient() as client:
        root = deployment.urls["registry"].removesuffix("/registry")
        text = (await client.get(f"{root}/metrics")).text
    exported = {
        line.split()[2]
        for line in text.splitlines()
        if line.startswith("# TYPE watchkeeper_") and not line.split()[2].endswith("_created")
    }
    documented = set(re.findall(r"^\| `(watchkeeper_[a-z0-9_]+)`", DOCS.read_text(), re.M))
    assert exported - documented == set(), "exported but not in docs/metrics.md"
    assert documented - exported == set(), "in docs/metrics.md but not exported"
