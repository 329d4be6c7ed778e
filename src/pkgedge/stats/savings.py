"""What the edge saves the origin: requests and bytes it did not have to serve, priced.

Pure arithmetic on counter values (a live window, a minute or an hour of rollups):

- **origin requests avoided** = ``hits + stale + collapsed``: requests answered from the
  cache (fresh or stale) and requests that joined another request's fetch instead of making
  their own (a stale answer's background revalidation is counted in ``origin_fetches``).
- **origin bytes avoided** = ``bytes_from_cache``: the bytes of responses written from the
  cache (fresh, stale, revalidated with a 304) or from another request's fetch (collapsed),
  heads included: the origin would have sent about as much for each of them. The edge's own
  compression of stored bodies makes it an estimate.
- **egress saved** = bytes avoided / 10^9 x ``egress_price_per_gb``.
- **energy saved** = bytes avoided x ``energy_joules_per_byte`` + requests avoided x
  ``energy_joules_per_request``.

The defaults, and what they assume (all three are options; set them to your own figures):

- ``egress_price_per_gb`` 0.09: the list price of the first tier of internet egress at the
  large public clouds (USD per GB), the figure an index paying for its own bandwidth would
  see; a CDN contract or a flat-rate line is much lower.
- ``energy_joules_per_byte`` 2e-5 (≈ 0.006 kWh/GB): a mid-2020s estimate of the energy
  intensity of moving data across the internet (access + core networks), extrapolated from
  published studies that find it roughly halving every two years; it does not include the
  clients' devices.
- ``energy_joules_per_request`` 0.2: an origin server drawing ~200 W while serving ~1000
  dynamic requests per second (database, rendering, storage reads).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ASSUMPTIONS: dict[str, str] = {
    "origin_requests_avoided": "hits + stale + collapsed",
    "origin_bytes_avoided": "bytes_from_cache: responses from the cache or a collapsed fetch",
    "egress_price_per_gb": "price of 10^9 bytes of origin egress (default: public cloud list"
    " price, first tier, USD)",
    "energy_joules_per_byte": "network energy per byte moved (default 2e-5 J/B ≈ 0.006 kWh/GB)",
    "energy_joules_per_request": "origin energy per request served (default 0.2 J: ~200 W"
    " server at ~1000 req/s)",
}


@dataclass(frozen=True)
class SavingsModel:
    egress_price_per_gb: float = 0.09
    joules_per_byte: float = 2e-5
    joules_per_request: float = 0.2


def savings(counts: Mapping[str, int], model: SavingsModel) -> dict[str, Any]:
    """What ``counts`` (counter deltas of some period) saved the origin."""
    by_hits = counts.get("hits", 0) + counts.get("stale", 0)
    by_collapsing = counts.get("collapsed", 0)
    requests = by_hits + by_collapsing
    nbytes = counts.get("bytes_from_cache", 0)
    total = counts.get("requests", 0)
    return {
        "origin_requests_avoided": requests,
        "by_hits": by_hits,
        "by_collapsing": by_collapsing,
        "origin_bytes_avoided": nbytes,
        "egress_saved": round(nbytes / 1e9 * model.egress_price_per_gb, 6),
        "energy_saved_joules": round(
            nbytes * model.joules_per_byte + requests * model.joules_per_request, 3
        ),
        "offload_ratio": round(requests / total, 4) if total else None,
    }


def prometheus(counts: Mapping[str, int], model: SavingsModel) -> str:
    """The running totals as Prometheus counters (for ``/metrics``)."""
    s = savings(counts, model)
    rows = [
        ("origin_requests_avoided_total", "origin requests avoided (hits, stale, collapsed)"),
        ("origin_bytes_avoided_total", "origin bytes avoided (answered from cache or collapsed)"),
        ("egress_saved_total", "origin egress saved, priced at egress-price-per-gb"),
        ("energy_saved_joules_total", "energy saved (energy-joules-per-byte and per-request)"),
    ]
    keys = ["origin_requests_avoided", "origin_bytes_avoided", "egress_saved"]
    keys.append("energy_saved_joules")
    lines = []
    for (metric, doc), key in zip(rows, keys, strict=True):
        lines.append(f"# HELP pkgedge_{metric} {doc}")
        lines.append(f"# TYPE pkgedge_{metric} counter")
        lines.append(f"pkgedge_{metric} {s[key]}")
    return "\n".join(lines) + "\n"
