"""Records per second on the edges of an org's graph, from the platform's own metrics.

A publishes edge (agent → topic) is ``kafkaorg_records_produced_total{org,topic,agent}``;
a subscribes edge (topic → agent) is ``kafkaorg_bridge_signals_total{org,topic,agent}``.
With a Prometheus scraping the platform (``KAFKAORG_PROMETHEUS_URL``) the rates are its
``rate()`` over a short window; without one, two readings of every process's endpoint a
moment apart (``ProcessRateMeter``), so the console works on a bare stack too.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections import defaultdict

from pydantic import BaseModel

from kafkaorg.config import Settings
from kafkaorg.errors import ServiceUnavailableError
from kafkaorg.metrics import metrics_endpoints, read_metrics
from kafkaorg.org_overview import edge_id

PRODUCED = "kafkaorg_records_produced_total"
SIGNALS = "kafkaorg_bridge_signals_total"
PROMETHEUS_WINDOW = "30s"


class EdgeRates(BaseModel):
    org: str
    source: str
    """``prometheus`` or ``processes``: where the numbers came from."""
    rates: dict[str, float]
    """Edge id → records per second (edges with no traffic may be absent)."""


def _edge(metric: str, topic: str, agent: str) -> str:
    if metric == PRODUCED:
        return edge_id("publishes", f"agent:{agent}", f"topic:{topic}")
    return edge_id("subscribes", f"topic:{topic}", f"agent:{agent}")


def prometheus_rates(url: str, org: str, timeout: float = 5.0) -> EdgeRates:
    """``rate()`` of both counters over the last ``PROMETHEUS_WINDOW``, per edge."""
    rates: dict[str, float] = {}
    for metric in (PRODUCED, SIGNALS):
        query = f'sum by (topic, agent) (rate({metric}{{org="{org}"}}[{PROMETHEUS_WINDOW}]))'
        address = f"{url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
        try:
            with urllib.request.urlopen(address, timeout=timeout) as response:
                answer = json.loads(response.read())
        except (OSError, ValueError) as exc:
            raise ServiceUnavailableError(f"Prometheus at {url}: {exc}") from None
        for item in answer.get("data", {}).get("result", []):
            labels = item.get("metric", {})
            rates[_edge(metric, labels.get("topic", ""), labels.get("agent", ""))] = float(
                item["value"][1]
            )
    return EdgeRates(org=org, source="prometheus", rates=rates)


def edge_counts(settings: Settings, org: str) -> dict[str, float]:
    """Both counters of ``org``, per edge, summed over every live process."""
    counts: dict[str, float] = defaultdict(float)
    for endpoint in metrics_endpoints(settings):
        if endpoint.process.endswith("temporal-sdk"):
            continue
        try:
            samples = read_metrics(endpoint.url, timeout=2.0)
        except OSError:
            continue  # a process that just exited
        for sample in samples:
            if sample.name in (PRODUCED, SIGNALS) and sample.labels.get("org") == org:
                key = _edge(sample.name, sample.labels["topic"], sample.labels["agent"])
                counts[key] += sample.value
    return dict(counts)


class ProcessRateMeter:
    """Rates from two readings of the counters: the last reading of each org is kept, so
    a view polling every few seconds gets the rate since its previous poll."""

    min_interval_s = 1.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._last: dict[str, tuple[float, dict[str, float]]] = {}

    def rates(self, org: str) -> EdgeRates:
        previous = self._last.get(org)
        if previous is None or time.monotonic() - previous[0] > 60:
            previous = (time.monotonic(), edge_counts(self.settings, org))
            time.sleep(self.min_interval_s)
        elif time.monotonic() - previous[0] < self.min_interval_s:
            time.sleep(self.min_interval_s - (time.monotonic() - previous[0]))
        now = (time.monotonic(), edge_counts(self.settings, org))
        self._last[org] = now
        elapsed = now[0] - previous[0]
        rates = {
            key: max(0.0, value - previous[1].get(key, 0.0)) / elapsed
            for key, value in now[1].items()
        }
        return EdgeRates(org=org, source="processes", rates=rates)


def edge_rates(settings: Settings, meter: ProcessRateMeter, org: str) -> EdgeRates:
    """From Prometheus when one is configured and answers, else from the processes."""
    if settings.prometheus_url:
        try:
            return prometheus_rates(settings.prometheus_url, org)
        except ServiceUnavailableError:
            pass
    return meter.rates(org)
