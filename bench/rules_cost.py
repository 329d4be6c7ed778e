"""What rules cost per request, in process: the compiled recv + deliver closures of
(a) the built-in default configuration and (b) a configuration of 20 typical rules.

Run with ``.venv/bin/python bench/rules_cost.py`` (``--quick``: fewer rounds).

Each round runs a mix of four cache-hit requests (pip and uv asking for simple pages, a
browser, a file download) through ``recv`` then ``deliver`` of each configuration, in
alternation, and reports µs per request, medians over the rounds:

* ``env + rules``: building the :class:`~pkgedge.rules.Env` (request headers copied into it,
  as the pipeline will) plus both closures;
* ``rules only``: the closures on Envs built before the clock starts.

Times are CPU time of this process (``time.process_time``), so other processes on a shared
machine disturb them less than wall-clock time would.

The issue's goal is on hits' req/s: with (b), at least 0.9 of the req/s with (a). A hit's
CPU cost without rules is ``--hit-us`` (43 µs: README, ``bench/edge_vs_nginx.py``), so the
projected req/s ratio is ``(hit + a) / (hit + b)``; the goal holds while (b) - (a) stays
below hit/9 (about 4.8 µs). Once rules are wired into the pipeline, measure the real ratio
with ``bench/edge_vs_nginx.py``-style load on two edges.
"""

from __future__ import annotations

import argparse
import statistics
import time

from pkgedge.rules import Env, Rules, compile_default, compile_rules

TYPICAL = r"""
# 20 typical rules: an ACL, a table, path regexes, header sets, User-Agent classes.
table renamed { "old-name": "new-name", "sklearn": "scikit-learn", "pil": "pillow" }
acl blocked { "192.0.2.0/24"; "198.51.100.128/25"; "2001:db8:bad::/48"; }
acl internal { "10.0.0.0/8"; "172.16.0.0/12"; "fd00::/8"; }

sub recv {
    if (client.ip in blocked) { block "address blocked by this index"; }                 # 1
    if (req.method != "GET" && req.method != "HEAD") { return(pass); }                   # 2
    if (req.path ~ "^/simple/[^/]+/$"
        && regsub(req.path, "^/simple/([^/]+)/$", "\1") in renamed) {
        redirect 301 "/simple/" + renamed[regsub(req.path, "^/simple/([^/]+)/$", "\1")] + "/";
    }                                                                                     # 3
    if (client.ua_class == "bot") { ratelimit "bots" 10 per 1s; }                        # 4
    if (req.http.user-agent ~ "(?i)(evilbot|scrapy-clone)") { block "not here"; }         # 5
    if (req.path ~ "^/admin") { error 404 "not found"; }                                  # 6
    if (client.ip in internal) { set req.http.x-internal = "1"; }                        # 7
    if (defined(req.http.cookie)) { unset req.http.cookie; }                             # 8
    if (req.query != "" && req.path ~ "^/simple/") { set req.url = req.path; }           # 9
    set req.http.x-ua-class = client.ua_class;                                           # 10
    if (req.path ~ "^/files/") { set req.backend = "files"; }                            # 11
    return(lookup);                                                                      # 12
}

sub deliver {
    if (req.path ~ "^/simple/") { set resp.http.x-index = "simple"; }                    # 13
    elif (req.path ~ "^/files/") { set resp.http.x-index = "files"; }
    if (cache.state == "hit") { set resp.http.x-cache = "HIT"; }                         # 14
    else { set resp.http.x-cache = "MISS"; }
    if (req.http.x-internal == "1") { set resp.http.x-served-by = "edge-1"; }            # 15
    if (resp.status == 200 && req.path ~ "\.whl$") { set resp.http.x-kind = "wheel"; }  # 16
    if (client.ua_class == "browser") { set resp.http.x-frame-options = "DENY"; }        # 17
    if (req.path ~ "^/simple/six/") { set resp.http.x-note = "hello"; }                  # 18
    if (obj.age > 1h) { set resp.http.x-old = "1"; }                                     # 19
    append resp.http.vary = "X-Ua-Class";                                                # 20
}
"""

_PIP = (
    'pip/24.0 {"ci":null,"cpu":"x86_64","distro":{"name":"Ubuntu","version":"22.04"},'
    '"implementation":{"name":"CPython","version":"3.11.6"},"installer":{"name":"pip",'
    '"version":"24.0"},"python":"3.11.6","system":{"name":"Linux","release":"6.5.0"}}'
)
_ACCEPT_JSON = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1"
REQUESTS = [
    ("/simple/numpy/", "198.51.100.23", "pip", {"user-agent": _PIP, "accept": _ACCEPT_JSON}),
    ("/simple/requests/", "203.0.113.9", "uv", {"user-agent": "uv/0.4.18", "accept": _ACCEPT_JSON}),
    (
        "/project/six/",
        "2001:db8:1::7",
        "browser",
        {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/131.0", "accept": "text/html"},
    ),
    (
        "/files/ab/cd/0123456789abcdef/six-1.16.0-py2.py3-none-any.whl",
        "198.51.100.23",
        "pip",
        {"user-agent": _PIP, "accept": "*/*"},
    ),
]
_COMMON = {"host": "edge.example", "accept-encoding": "gzip, br", "connection": "keep-alive"}


def make_env(rules_tables: dict[str, object], i: int) -> Env:
    url, ip, ua, headers = REQUESTS[i % len(REQUESTS)]
    return Env(
        method="GET",
        url=url,
        req_headers={**_COMMON, **headers},
        client_ip=ip,
        client_identity=ip,
        ua_class=ua,
        tables=rules_tables,  # type: ignore[arg-type]
        obj_status=200,
        obj_ttl=3000.0,
        obj_age=600.0,
        obj_headers={"content-type": "text/html"},
        resp_status=200,
        resp_headers={"content-type": "text/html", "vary": "Accept"},
        cache_state="hit",
        limiter=lambda name, key, rate, per: True,
    )


def time_once(rules: Rules, n: int, prebuilt: bool) -> float:
    """µs per request for n requests."""
    tables = rules.tables().current
    # a phase without rules (an empty sub, as default.vcl's deliver) is skipped, as the
    # pipeline will skip it
    runners = [r for r in (rules.runners["recv"], rules.runners["deliver"]) if r is not None]
    if prebuilt:
        envs = [make_env(tables, i) for i in range(n)]  # type: ignore[arg-type]
        t0 = time.process_time()
        for env in envs:
            for run in runners:
                run(env)
        return (time.process_time() - t0) / n * 1e6
    t0 = time.process_time()
    for i in range(n):
        env = make_env(tables, i)  # type: ignore[arg-type]
        for run in runners:
            run(env)
    return (time.process_time() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--n", type=int, default=20_000, help="requests per round")
    ap.add_argument("--hit-us", type=float, default=43.0, help="a hit's CPU without rules")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.n = 5, 5_000
    default, typical = compile_default(), compile_rules(TYPICAL, name="typical.vcl")
    check(typical)
    print(f"{args.rounds} rounds of {args.n} requests (4-request hit mix), recv + deliver")
    print("µs per request: median of the rounds (the fastest round in brackets)")
    print(f"{'':14}{'(a) default':>18}{'(b) 20 rules':>18}{'b - a':>16}{'b / a':>7}")
    results = {}
    for label, prebuilt in (("env + rules", False), ("rules only", True)):
        a_s, b_s = [], []
        for _ in range(args.rounds):  # alternate, so both see the same machine
            a_s.append(time_once(default, args.n, prebuilt))
            b_s.append(time_once(typical, args.n, prebuilt))
        a, b = statistics.median(a_s), statistics.median(b_s)
        a_min, b_min = min(a_s), min(b_s)
        results[label] = (a, b, a_min, b_min)
        print(
            f"{label:14}{a:>9.2f} ({a_min:5.2f}){b:>10.2f} ({b_min:5.2f})"
            f"{b - a:>8.2f} ({b_min - a_min:5.2f}){b / a:>7.2f}"
        )
    a, b, a_min, b_min = results["env + rules"]
    hit = args.hit_us
    print(
        f"projected hit req/s ratio (b)/(a) with a {hit:.0f} µs hit: "
        f"{(hit + a) / (hit + b):.3f} (fastest rounds: {(hit + a_min) / (hit + b_min):.3f}; "
        "goal >= 0.9)"
    )


def check(typical: Rules) -> None:
    """The typical rules do what they say on the mix (so the benchmark measures real work)."""
    tables = typical.tables().current
    env = make_env(tables, 2)  # type: ignore[arg-type]
    assert typical.run("recv", env) is not None
    typical.run("deliver", env)
    assert env.resp_headers["x-frame-options"] == "DENY", env.resp_headers
    assert env.resp_headers["vary"] == "Accept, X-Ua-Class"
    env = make_env(tables, 3)  # type: ignore[arg-type]
    typical.run("recv", env)
    typical.run("deliver", env)
    assert env.backend == "files" and env.resp_headers["x-kind"] == "wheel"


if __name__ == "__main__":
    main()
