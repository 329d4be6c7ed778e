"""The edge's guard: who is asking, may they, and how are they behaving.

Composes the pure pieces of :mod:`pkgedge.security` with settings and counters.
:meth:`Guard.admit` runs before a request is served (allow/deny lists, penalty box, token
bucket at the cost of a hit); :meth:`Guard.account` runs after it (charges an origin fetch
its extra cost, feeds the behaviour signals, throttles or blocks). In ``observe`` mode every
decision is counted and logged but nothing is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pkgedge.config import EdgeSettings, parse_rate
from pkgedge.http.response import error_response
from pkgedge.security import (
    AclFile,
    AclResult,
    BucketSpec,
    CacheBusting,
    ClientIdentity,
    Enumeration,
    NotFoundRatio,
    PenaltyBox,
    RateLimiter,
    RepeatDownloads,
    SignalHit,
    SignalPolicy,
    classify,
)
from pkgedge.stats.counters import Counters

if TYPE_CHECKING:
    from pkgedge.http.request import Request

_HOW_TO = (
    "If this is a CI system, keep a download cache between runs (pip --cache-dir, "
    "uv's cache) instead of fetching the same files again; a mirror should ask the "
    "operator of this index to be allowlisted."
)


def _route_class(target: str) -> str:
    """Buckets are per client *and* route class, so a client fetching many files does not
    starve its own index-page lookups (and the other way round)."""
    if target.startswith(("/files/", "/+f/", "/packages/")):
        return "files"
    if target.startswith(("/simple", "/pypi/")):
        return "index"
    return "other"


class Guard:
    def __init__(self, settings: EdgeSettings, counters: Counters) -> None:
        self.mode = settings.protection
        self.counters = counters
        proxies = [p.strip() for p in settings.trusted_proxies.split(",") if p.strip()]
        self.identity = ClientIdentity(proxies)
        self.acl = AclFile(settings.acl_file) if settings.acl_file else None
        self._acl_seen: object = None
        self._acl_cache: dict[tuple[str, str], AclResult] = {}
        self.limiter = RateLimiter(
            {
                "default": BucketSpec(*parse_rate(settings.rate_limit)),
                "bot": BucketSpec(*parse_rate(settings.bot_rate_limit)),
                "throttled": BucketSpec(*parse_rate(settings.throttled_rate_limit)),
            }
        )
        self.penalties = PenaltyBox(900.0)
        self.throttled = PenaltyBox(300.0)
        self.policy = SignalPolicy()
        self.origin_cost = settings.origin_cost
        self.repeats = RepeatDownloads()
        self.enumeration = Enumeration()
        self.not_found = NotFoundRatio()
        self.busting = CacheBusting()

    def __repr__(self) -> str:
        return f"<Guard mode={self.mode} acl={self.acl is not None}>"

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def _refuse(
        self, req: Request, status: int, counter: str, reason: str, retry_after: float | None = None
    ) -> bytes | None:
        self.counters.add(counter)
        req.note = f"{counter}: {reason}"
        if self.mode == "observe":
            self.counters.add("observed")
            return None
        extra = [("retry-after", str(max(1, int(retry_after + 0.999))))] if retry_after else []
        return error_response(status, reason, close=not req.keep_alive, extra=extra)

    def admit(self, req: Request, now: float) -> bytes | None:
        """None to serve the request, or the complete refusal to send instead."""
        key = self.identity.identify(req.client, req.map.get("x-forwarded-for"))
        req.key = key
        req.spec = "default"  # admitted once: the slow path does not charge again
        ua = req.map.get("user-agent", "")
        if self.acl is not None:
            verdict = self._acl_check(self.acl, key, ua, now)
            if verdict.verdict == "allow":
                req.spec = "allow"
                return None
            if verdict.verdict == "deny":
                return self._refuse(
                    req,
                    403,
                    "denied",
                    f"access denied by this index's deny list ({verdict.reason})",
                )
        penalty = self.penalties.check(key, now)
        if penalty is not None:
            return self._refuse(
                req,
                429,
                "rate_limited",
                f"too many requests from {key}: blocked for {penalty.reason}. {_HOW_TO}",
                penalty.until - now,
            )
        spec = (
            "throttled"
            if self.throttled.check(key, now) is not None
            else ("bot" if classify(ua).kind == "bot" else "default")
        )
        req.spec = spec
        decision = self.limiter.take(f"{key}|{_route_class(req.target)}", 1.0, now, spec)
        if not decision.allowed:
            return self._refuse(
                req,
                429,
                "rate_limited",
                f"too many requests from {key} (limit '{spec}'). {_HOW_TO}",
                decision.retry_after,
            )
        return None

    def _acl_check(self, aclfile: AclFile, key: str, ua: str, now: float) -> AclResult:
        """The ACL's verdict, cached per (client, User-Agent) until the list is reloaded:
        matching every UA pattern on every request is the costliest check there is."""
        aclfile.refresh(now)
        acl = aclfile.acl
        if acl is not self._acl_seen:
            self._acl_seen = acl
            self._acl_cache.clear()
        hit = self._acl_cache.get((key, ua))
        if hit is None:
            hit = acl.check(key, ua)
            if len(self._acl_cache) >= 65536:
                self._acl_cache.clear()
            self._acl_cache[(key, ua)] = hit
        return hit

    def account(self, req: Request, status: int, cache_status: str, now: float) -> None:
        """After the answer: charge origin work, and watch behaviour."""
        key = req.key
        if not key or req.spec == "allow":
            return
        if "fwd=" in cache_status and "fwd=stale" not in cache_status:
            bucket = f"{key}|{_route_class(req.target)}"
            self.limiter.take(bucket, self.origin_cost - 1.0, now, req.spec or "default")
        path, _, query = req.target.partition("?")
        hits: list[SignalHit | None] = [self.not_found.observe(key, status, now)]
        if path.startswith(("/files/", "/+f/", "/packages/")):
            hits.append(self.repeats.observe(key, path, now))
        elif path.startswith(("/simple/", "/pypi/")):
            hits.append(self.enumeration.observe(key, path, now))
        if query:
            hits.append(self.busting.observe(key, path, query, now))
        for hit in hits:
            if hit is not None:
                self._act(req, hit, now)

    def _act(self, req: Request, hit: SignalHit, now: float) -> None:
        action = self.policy.decide(hit)
        if hit.first:
            self.counters.add("signals")
        req.note = f"signal {hit.reason}: {action.action}"
        if action.action == "observe" or self.mode == "observe":
            return
        if action.action == "throttle":
            if self.throttled.check(hit.client, now) is None:
                self.throttled.penalize(hit.client, now, action.duration, hit.reason)
        elif self.penalties.check(hit.client, now) is None:
            self.penalties.penalize(hit.client, now, action.duration, hit.reason)
            self.counters.add("penalized")
