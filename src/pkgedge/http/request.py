"""A parsed client request, as every protocol (HTTP/1.1, HTTP/2) hands it to the pipeline."""

from __future__ import annotations


class Request:
    __slots__ = (
        "body",
        "client",
        "headers",
        "http",
        "keep_alive",
        "key",
        "map",
        "method",
        "note",
        "pre",
        "refusal",
        "shape",
        "spec",
        "target",
    )

    def __init__(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        keep_alive: bool,
        client: str,
        fields: dict[str, str] | None = None,
        http: str = "1.1",
    ) -> None:
        """``headers``: lower-case names in arrival order; ``fields``: the same as a dict with
        repeated fields comma-joined (built from ``headers`` when not given). Both may be
        shared by several requests (the same bytes parsed once): never mutate them."""
        self.method = method
        self.target = target
        self.headers = headers
        if fields is None:
            fields = {}
            for n, v in headers:
                fields[n] = f"{fields[n]}, {v}" if n in fields else v
        self.map = fields
        self.keep_alive = keep_alive
        self.body = b""
        self.client = client
        self.http = http  # the protocol version it came in: "1.1" or "2"
        self.key = ""  # the client's identity for limits (set by the guard)
        self.spec = ""  # the rate-limit class it was charged under
        self.note = ""  # what protection decided, for the access log
        self.refusal: bytes | None = None  # a refusal decided before the pipeline ran
        self.shape: tuple[object, ...] | None = None  # its key in the fast path's memo
        self.pre: object = None  # what the fast path's live recv rules decided (edge/rulesrun)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target}>"
