"""The grace (serve stale when the origin fails) with a fake clock: the pure decision in
``cache/policy.py`` and the ``grace`` / ``grace_immutable`` options."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pkgedge.cache.policy import Freshness, freshness, stale_on_error
from pkgedge.config import build_edge_settings, parse_grace
from pkgedge.errors import ConfigError
from pkgedge.http.dates import format_http_date

STORED = 1_700_000_000.0  # when the fake clock says the response was stored
DAY = 86400.0


def stored(cache_control: str, **extra: str) -> Freshness:
    headers = {"cache-control": cache_control, "date": format_http_date(STORED), **extra}
    return freshness(200, headers, response_time=STORED)


def at(now: float, fr: Freshness, grace: float) -> str | None:
    return stale_on_error(now - STORED, fr, grace)


def test_grace_serves_stale_past_the_lifetime_until_it_ends() -> None:
    fr = stored("max-age=60")
    assert at(STORED + 30, fr, DAY) == "stale-if-error"  # still fresh
    assert at(STORED + 61, fr, DAY) == "grace"
    assert at(STORED + 60 + DAY - 1, fr, DAY) == "grace"
    assert at(STORED + 60 + DAY, fr, DAY) is None
    assert at(STORED + 61, fr, 0.0) is None  # grace off: only what the origin allows


def test_unlimited_grace_never_ends() -> None:
    fr = stored("max-age=0")
    assert at(STORED + 10 * 365 * DAY, fr, math.inf) == "grace"


def test_the_origins_stale_if_error_comes_first_and_grace_extends_it() -> None:
    fr = stored("max-age=60, stale-if-error=600")
    assert at(STORED + 300, fr, 0.0) == "stale-if-error"
    assert at(STORED + 700, fr, 0.0) is None
    assert at(STORED + 700, fr, DAY) == "grace"


def test_heuristic_freshness_from_last_modified_gets_grace() -> None:
    # a static upstream: only Last-Modified, a few seconds old, so stale almost at once
    fr = freshness(
        200,
        {"date": format_http_date(STORED), "last-modified": format_http_date(STORED - 5)},
        response_time=STORED,
    )
    assert fr.heuristic and fr.lifetime < 1
    assert at(STORED + 3600, fr, DAY) == "grace"


@pytest.mark.parametrize(
    "cache_control",
    ["max-age=60, must-revalidate", "max-age=60, proxy-revalidate", "s-maxage=60", "no-cache"],
)
def test_revalidation_directives_get_no_grace(cache_control: str) -> None:
    fr = stored(cache_control, etag='"v1"')
    assert at(STORED + 61, fr, math.inf) is None


def test_explicit_stale_if_error_still_applies_under_must_revalidate() -> None:
    fr = stored("max-age=60, must-revalidate, stale-if-error=120")
    assert at(STORED + 100, fr, DAY) == "stale-if-error"
    assert at(STORED + 200, fr, DAY) is None  # never grace beyond it


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("24h", DAY), ("2d", 2 * DAY), ("0", 0.0), ("90s", 90.0), ("unlimited", math.inf)],
)
def test_parse_grace(text: str, seconds: float) -> None:
    assert parse_grace(text) == seconds


def test_grace_options_defaults_flags_env_and_file(tmp_path: Path) -> None:
    def build(flags: dict[str, object], env: dict[str, str], config: str | None = None):  # type: ignore[no-untyped-def]
        return build_edge_settings(
            flags, environ=env, config_file=config, resolve_upstream=lambda: "http://x.test/"
        )

    s = build({}, {})
    assert (s.grace, s.grace_immutable) == (DAY, math.inf)
    assert build({"grace": "1h"}, {}).grace == 3600.0
    assert build({}, {"PKGEDGE_GRACE_IMMUTABLE": "7d"}).grace_immutable == 7 * DAY
    cfg = tmp_path / "edge.toml"
    cfg.write_text('[edge]\ngrace = "0"\ngrace_immutable = "unlimited"\n')
    s = build({}, {}, str(cfg))
    assert (s.grace, s.grace_immutable) == (0.0, math.inf)
    assert s.as_dict()["grace_immutable"] == "unlimited"  # what `config show` prints
    with pytest.raises(ConfigError, match="flag --grace: not a duration"):
        build({"grace": "soon"}, {})
