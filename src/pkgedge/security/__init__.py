"""Protection for the edge: who the client is, what it is, how fast it may go, and whether
it behaves. Pure modules: no sockets, no asyncio, no clock (time comes in as ``now``); the one
I/O is :class:`AclFile` reading its file. Every decision returns a result with a ``reason``
for the caller to log and count.
"""

from __future__ import annotations

from pkgedge.security.acl import Acl, AclFile, AclReload, AclResult, AclRule, AclSyntaxError
from pkgedge.security.clientid import ClientId, ClientIdentity, parse_address
from pkgedge.security.ratelimit import (
    BucketSpec,
    Decision,
    MemoryStore,
    Penalty,
    PenaltyBox,
    RateLimiter,
    Store,
)
from pkgedge.security.signals import (
    ACTIONS,
    Action,
    CacheBusting,
    CountSettings,
    Enumeration,
    NotFoundRatio,
    RatioSettings,
    RepeatDownloads,
    SignalAction,
    SignalHit,
    SignalPolicy,
)
from pkgedge.security.useragent import INSTALLER_KINDS, KINDS, ClientClass, classify

__all__ = [
    "ACTIONS",
    "INSTALLER_KINDS",
    "KINDS",
    "Acl",
    "AclFile",
    "AclReload",
    "AclResult",
    "AclRule",
    "AclSyntaxError",
    "Action",
    "BucketSpec",
    "CacheBusting",
    "ClientClass",
    "ClientId",
    "ClientIdentity",
    "CountSettings",
    "Decision",
    "Enumeration",
    "MemoryStore",
    "NotFoundRatio",
    "Penalty",
    "PenaltyBox",
    "RateLimiter",
    "RatioSettings",
    "RepeatDownloads",
    "SignalAction",
    "SignalHit",
    "SignalPolicy",
    "Store",
    "classify",
    "parse_address",
]
