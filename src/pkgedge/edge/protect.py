"""The edge's guard: who is asking, may they, and how are they behaving.

Composes the pure pieces of :mod:`pkgedge.security` with settings and counters.
:meth:`Guard.admit` runs before a request is served (allow/deny lists, penalty box, token
bucket at the cost of a hit); :meth:`Guard.account` runs after it (charges an origin fetch
its extra cost, feeds the behaviour signals, throttles or blocks). In ``observe`` mode every
decision is counted and logged but nothing is refused.

Both run on every cache hit, so what cannot change between requests is worked out once per
distinct (peer, X-Forwarded-For, User-Agent) and kept in a bounded table of :class:`_Client`
profiles: the client key, the User-Agent's bucket spec, the ACL verdict (the table is
emptied when the ACL file is reloaded) and the names of the client's buckets. What does
change is still looked at on every request, cheaply: the penalty boxes through their
``expires`` times (one dict get each; the boxes themselves only when one may hold the key),
the token bucket through :meth:`RateLimiter.charge` with a prepared key.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pkgedge.config import EdgeSettings, parse_rate
from pkgedge.edge.shield import TrustedEdges
from pkgedge.http.response import error_response
from pkgedge.security import (
    Acl,
    AclFile,
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
from pkgedge.security.sharedsignals import SharedSignals
from pkgedge.stats.counters import Counters

if TYPE_CHECKING:
    from pkgedge.http.request import Request

_HOW_TO = (
    "If this is a CI system, keep a download cache between runs (pip --cache-dir, "
    "uv's cache) instead of fetching the same files again; a mirror should ask the "
    "operator of this index to be allowlisted."
)


_FILES = ("/files/", "/+f/", "/packages/")
_INDEX = ("/simple", "/pypi/")
_PAGES = ("/simple/", "/pypi/")
_ROUTES = ("files", "index", "other")
#: distinct (peer, X-Forwarded-For, User-Agent) profiles kept (the table is emptied when full)
PROFILES = 8192
#: longer X-Forwarded-For / User-Agent values are resolved on every request, not kept
_MAX_XFF, _MAX_UA = 256, 2048
_NEVER = -math.inf


def _route(target: str) -> int:
    """Buckets are per client *and* route class, so a client fetching many files does not
    starve its own index-page lookups (and the other way round). Index into ``_ROUTES``."""
    if target.startswith(_FILES):
        return 0
    if target.startswith(_INDEX):
        return 1
    return 2


def _route_class(target: str) -> str:
    return _ROUTES[_route(target)]


def _expiry_times(box: PenaltyBox) -> dict[str, float]:
    if box.expires is None:  # only a box with a store of its own keeps them
        raise RuntimeError("the guard's penalty boxes must keep their own stores")
    return box.expires


class _Client:
    """What the guard knows of one (peer, X-Forwarded-For, User-Agent) for good."""

    __slots__ = ("bucket", "buckets", "key", "spec", "throttled", "verdict", "why")

    def __init__(
        self, key: str, spec: str, bucket: BucketSpec, verdict: str | None, why: str
    ) -> None:
        self.key = key
        self.spec = spec  # "default" or "bot" (from the User-Agent)
        self.bucket = bucket
        self.verdict = verdict  # the ACL's: "allow", "deny" or None
        self.why = why  # the deny rule, for the refusal
        # store keys of the client's buckets per route class, as RateLimiter.take names them
        self.buckets = tuple(RateLimiter.bucket_key(f"{key}|{r}", spec) for r in _ROUTES)
        self.throttled = tuple(RateLimiter.bucket_key(f"{key}|{r}", "throttled") for r in _ROUTES)

    def __repr__(self) -> str:
        return f"<_Client {self.key} spec={self.spec} verdict={self.verdict}>"


class Guard:
    def __init__(self, settings: EdgeSettings, counters: Counters) -> None:
        self.mode = settings.protection
        self.counters = counters
        self.edges = TrustedEdges(settings.trusted_edges)  # a shield's edges (edge/shield.py)
        proxies = [
            p.strip()
            for p in f"{settings.trusted_proxies},{settings.trusted_edges}".split(",")
            if p.strip()
        ]
        self.identity = ClientIdentity(proxies)
        self.acl = AclFile(settings.acl_file) if settings.acl_file else None
        self._acl_seen: Acl | None = self.acl.acl if self.acl is not None else None
        self.limiter = RateLimiter(
            {
                "default": BucketSpec(*parse_rate(settings.rate_limit)),
                "bot": BucketSpec(*parse_rate(settings.bot_rate_limit)),
                "throttled": BucketSpec(*parse_rate(settings.throttled_rate_limit)),
            }
        )
        self._specs = self.limiter.specs
        self.penalties = PenaltyBox(900.0)
        self.throttled = PenaltyBox(300.0)
        # when each key's penalty surely ended: one dict get per box and request
        self._blocked = _expiry_times(self.penalties)
        self._slowed = _expiry_times(self.throttled)
        self.policy = SignalPolicy()
        self.origin_cost = settings.origin_cost
        self.repeats = RepeatDownloads()
        self.enumeration = Enumeration()
        self.not_found = NotFoundRatio()
        self.busting = CacheBusting()
        self._clients: dict[tuple[str, str | None, str | None], _Client] = {}

    def __repr__(self) -> str:
        return f"<Guard mode={self.mode} acl={self.acl is not None}>"

    def share_signals(self) -> SharedSignals:
        """Replace the behaviour detectors by twins whose figures a cluster sync shares
        (:mod:`pkgedge.cluster.signals`); same settings, same decisions while alone."""
        shared = SharedSignals(
            self.repeats.settings,
            self.not_found.settings,
            self.enumeration.settings,
            self.busting.settings,
        )
        self.repeats, self.not_found = shared.repeats, shared.not_found
        self.enumeration, self.busting = shared.enumeration, shared.busting
        return shared

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

    # -- profiles ----------------------------------------------------------------------
    def client(self, peer: str, xff: str | None, ua: str | None) -> _Client:
        """The profile of (peer, X-Forwarded-For, User-Agent), from the table or made."""
        ck = (peer, xff, ua)
        found = self._clients.get(ck)
        if found is not None:
            return found
        key = self.identity.identify(peer, xff)
        agent = ua or ""
        spec = "bot" if classify(agent).kind == "bot" else "default"
        verdict, why = None, ""
        if self._acl_seen is not None:
            result = self._acl_seen.check(key, agent)
            verdict, why = result.verdict, result.reason
        if verdict is None and self.edges and self.edges.trusts(peer):
            verdict = "allow"  # an edge: protection ran there
        made = _Client(key, spec, self._specs[spec], verdict, why)
        if (xff is None or len(xff) <= _MAX_XFF) and (ua is None or len(ua) <= _MAX_UA):
            if len(self._clients) >= PROFILES:
                self._clients.clear()
            self._clients[ck] = made
        return made

    def _reload_acl(self, aclfile: AclFile, now: float) -> None:
        aclfile.refresh(now)
        if aclfile.acl is not self._acl_seen:
            self._acl_seen = aclfile.acl
            self._clients.clear()  # their verdicts were the previous list's

    # -- before ------------------------------------------------------------------------
    def admit(self, req: Request, now: float) -> bytes | None:
        """None to serve the request, or the complete refusal to send instead. Sets
        ``req.key`` and ``req.spec`` (never empty afterwards: admitted once, the slow path
        does not charge again)."""
        m = req.map
        aclfile = self.acl
        if aclfile is not None and now >= aclfile.next_check:
            self._reload_acl(aclfile, now)
        c = self._clients.get((req.client, m.get("x-forwarded-for"), m.get("user-agent")))
        if c is None:
            c = self.client(req.client, m.get("x-forwarded-for"), m.get("user-agent"))
        key = req.key = c.key
        if c.verdict is not None:
            if c.verdict == "allow":
                req.spec = "allow"
                return None
            req.spec = "default"
            reason = f"access denied by this index's deny list ({c.why})"
            return self._refuse(req, 403, "denied", reason)
        if self._blocked.get(key, _NEVER) > now or self._slowed.get(key, _NEVER) > now:
            return self._admit_penalized(req, c, now)
        spec = req.spec = c.spec
        t = req.target  # _route(), inlined
        route = 0 if t.startswith(_FILES) else 1 if t.startswith(_INDEX) else 2
        retry = self.limiter.charge(c.buckets[route], 1.0, now, c.bucket)
        if retry:
            return self._limited(req, key, spec, retry)
        return None

    def _admit_penalized(self, req: Request, c: _Client, now: float) -> bytes | None:
        """admit() for a key that one of the penalty boxes may hold."""
        key = c.key
        req.spec = "default"
        penalty = self.penalties.check(key, now)
        if penalty is not None:
            return self._refuse(
                req,
                429,
                "rate_limited",
                f"too many requests from {key}: blocked for {penalty.reason}. {_HOW_TO}",
                penalty.until - now,
            )
        route = _route(req.target)
        if self.throttled.check(key, now) is not None:
            spec, bucket, name = "throttled", self._specs["throttled"], c.throttled[route]
        else:
            spec, bucket, name = c.spec, c.bucket, c.buckets[route]
        req.spec = spec
        retry = self.limiter.charge(name, 1.0, now, bucket)
        if retry:
            return self._limited(req, key, spec, retry)
        return None

    def _limited(self, req: Request, key: str, spec: str, retry: float) -> bytes | None:
        reason = f"too many requests from {key} (limit '{spec}'). {_HOW_TO}"
        return self._refuse(req, 429, "rate_limited", reason, retry)

    # -- after -------------------------------------------------------------------------
    def account(self, req: Request, status: int, cache_status: str, now: float) -> None:
        """After the answer: charge origin work, and watch behaviour."""
        key = req.key
        if not key or req.spec == "allow":
            return
        target = req.target
        if cache_status != "hit" and "fwd=" in cache_status and "fwd=stale" not in cache_status:
            bucket = f"{key}|{_route_class(target)}"  # an origin fetch: not the hot path
            self.limiter.take(bucket, self.origin_cost - 1.0, now, req.spec or "default")
        # the detectors in the order they always ran: each one's hit acted on at once
        # (acting changes nothing a later detector reads)
        hit = self.not_found.observe(key, status, now)
        if hit is not None:
            self._act(req, hit, now)
        q = target.find("?")
        path = target if q < 0 else target[:q]
        if path.startswith(_FILES):
            hit = self.repeats.observe(key, path, now)
        elif path.startswith(_PAGES):
            hit = self.enumeration.observe(key, path, now)
        else:
            hit = None
        if hit is not None:
            self._act(req, hit, now)
        if q >= 0 and q + 1 < len(target):  # a non-empty query
            hit = self.busting.observe(key, path, target[q + 1 :], now)
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
