"""What the edge accepts from a client, whichever protocol it speaks: the methods it relays
(and the Allow field of its 405), and the syntax of a Host (or ``:authority``) value.

:mod:`pkgedge.server.h1parse` (HTTP/1.1) and :mod:`pkgedge.server.h2glue` (HTTP/2) check every
request against these, so both protocols refuse the same requests.
"""

from __future__ import annotations

import re

#: Methods the edge relays at all; anything else is answered 405 (TRACE/CONNECT included).
ALLOWED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ALLOW_HEADER = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
#: A Host value: an IP literal in brackets or a reg-name, then an optional port.
HOST_RE = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::\d{1,5})?$")
