# pkgedge's built-in rules: what the edge does when you configure nothing.
#
# Copy this file, change one thing, and point the edge at your copy. A sub that ends
# without an action (return, error, synthetic, redirect, block, ...) lets the phase do its
# default, which is what the comments below describe; the cache policy (RFC 9111) and the
# protection (rate limits, allow/deny lists, behaviour signals) run around these rules.

sub recv {
    # Before this sub: admission. Each client (its address, or its IPv6 /64) has a token
    # bucket (rate-limit, bot-rate-limit for crawlers, throttled-rate-limit for clients a
    # behaviour signal flagged); the allow/deny list file applies; a refused client gets a
    # 429 or 403. Only the index's own paths are routed to the origin (anything else: 404).

    # Only GET and HEAD are answered from the cache. Uploads (POST) and every other method
    # go to the origin for this client alone, and a successful unsafe request invalidates
    # the stored copies of its target (RFC 9111 section 4.4).
    if (req.method != "GET" && req.method != "HEAD") {
        return(pass);
    }
    return(lookup);
}

sub hash {
    # The cache key is the normalised path: dot segments removed, characters a path may
    # hold literally decoded (pip sends %2B for +), the query kept as given. The simple
    # API's Accept header is folded to its two variants, JSON or HTML, so pip and uv share
    # stored pages; other Vary fields pick a stored variant. hash_data(...) adds key parts.
    return(lookup);
}

sub hit {
    # A fresh object is delivered. A stale one inside its stale-while-revalidate window is
    # delivered while one background fetch revalidates it; a soft-purged one, or one the
    # client asked to revalidate (no-cache, max-age=0), is revalidated first; with
    # only-if-cached a stale object is a 504. return(fetch) forces a revalidation,
    # return(pass) a private fetch.
}

sub miss {
    # One fetch per object across all workers: other requests for it wait on that fetch and
    # read the body as it arrives. Beyond max-origin-fetches concurrent fetches the edge
    # serves a stale copy if it has one, else a 503 with Retry-After.
}

sub pass {
    # A private fetch for this client, never stored; it counts against max-origin-fetches
    # too (beyond: 503 with Retry-After). Redirects the origin sends are rewritten to point
    # at the edge.
}

sub fetch {
    # Freshness is the origin's: Pkgedge-CDN-Cache-Control, then CDN-Cache-Control, then
    # Surrogate-Control, then Cache-Control and Expires. beresp.ttl, beresp.swr and
    # beresp.sie hold what it said (stale-while-revalidate, stale-if-error). Without any,
    # a response with Last-Modified is fresh for 10% of its age (at most a day), else for
    # the configured default-ttl (0: not stored). Responses the origin marks private or
    # no-store, and 206s, are not stored. pkgedge's own origin sends long Surrogate-Control
    # lifetimes and a Surrogate-Key per project and purges them after every change.
    # To keep index pages five minutes whatever the origin says:
    #     if (req.path ~ "^/simple/") { set beresp.ttl = 5m; }
    # A fetch that fails delivers a stale copy inside its stale-if-error window, else an
    # error (502, or 504 on a timeout).
}

sub deliver {
    # The edge answers conditional requests and ranges from the stored object, compresses
    # (gzip, br) what compresses, and adds Age and Cache-Status. Edge-only fields
    # (Surrogate-*, the targeted cache-control fields) never reach the client.
}

sub error {
    # Errors and refusals are short plain-text pages naming the reason.
}

sub log {
    # One access-log line per request; counters for the admin API and Prometheus.
}
