"""Checked syntax tree → one closure per phase, and :func:`compile_rules`, the entry point.

A sub's body becomes a tuple of statement closures run in order until one returns an
:class:`~pkgedge.rules.env.Outcome`; ``if`` picks one branch. There are no loops in the
language, so a run does work bounded by the configuration's size; strings are capped
(:data:`~pkgedge.rules.exprs.MAX_STRING`), restarts too (``max_restarts``). A run raises
:class:`~pkgedge.rules.errors.RulesRuntimeError` and nothing else.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Collection
from importlib import resources

from pkgedge.rules import nodes as n
from pkgedge.rules.check import check
from pkgedge.rules.effects import Effects, sub_effects
from pkgedge.rules.env import Env, Kind, Outcome
from pkgedge.rules.errors import RulesError, RulesRuntimeError
from pkgedge.rules.exprs import MAX_STRING, Getter, capped, compile_expr, header_parts
from pkgedge.rules.parse import parse
from pkgedge.rules.tables import Tables
from pkgedge.rules.variables import PHASES

__all__ = ["DEFAULT_MAX_RESTARTS", "Rules", "Runner", "compile_rules", "default_source"]

Runner = Callable[[Env], Outcome | None]
DEFAULT_MAX_RESTARTS = 3
_BAD_VALUE = re.compile(r"[\r\n\0]").search
_BAD_URL = re.compile(r"[\s\0]").search
_SCOPES = {"req_headers": "req", "obj_headers": "obj", "beresp_headers": "beresp"}
_SCOPES["resp_headers"] = "resp"


def default_source() -> str:
    """The built-in default configuration (``default.vcl``): what the edge does by default."""
    return resources.files(__package__).joinpath("default.vcl").read_text("utf-8")


class Rules:
    """A compiled configuration.

    ``runners[phase]`` is the closure of that phase's sub, or None when the configuration has
    no such sub or it is empty (the pipeline then skips it, and needs no Env for it).
    ``tables()`` makes a :class:`Tables` with the declared initial contents, to share
    between requests and replace live.
    """

    __slots__ = ("declared", "effects", "initial", "max_restarts", "name", "runners", "source")

    def __init__(
        self,
        name: str,
        source: str,
        runners: dict[str, Runner | None],
        declared: dict[str, str],
        initial: dict[str, dict[str, str] | list[str]],
        max_restarts: int,
        effects: dict[str, Effects] | None = None,
    ) -> None:
        self.name = name
        #: per phase with a sub: what it reads, and whether it has side effects
        self.effects = effects or {}
        self.source = source
        self.runners = runners
        self.declared = declared
        self.initial = initial
        self.max_restarts = max_restarts

    def run(self, phase: str, env: Env) -> Outcome | None:
        """Run ``phase``'s sub on ``env`` (None: no sub, or it ended without an action; a
        phase without rules, such as ``lookup``, has none)."""
        runner = self.runners.get(phase)
        return None if runner is None else runner(env)

    def tables(self) -> Tables:
        return Tables(self.declared, self.initial)

    def __repr__(self) -> str:
        subs = [p for p, r in self.runners.items() if r is not None]
        return f"<Rules {self.name} subs={subs} tables={sorted(self.declared)}>"


def compile_rules(
    source: str,
    *,
    name: str = "<rules>",
    backends: Collection[str] | None = None,
    max_restarts: int = DEFAULT_MAX_RESTARTS,
) -> Rules:
    """Parse, check and compile ``source``; :class:`RulesError` listing every problem found.

    ``backends``, when given, are the backend names ``set req.backend`` and ``restart``
    may name literally; ``max_restarts`` bounds restarts per request.
    """
    parsed = parse(source, name)
    if parsed.diagnostics:
        raise RulesError(parsed.diagnostics)
    declared = check(parsed, backends)
    if parsed.diagnostics:
        raise RulesError(sorted(parsed.diagnostics, key=lambda d: (d.span.line, d.span.column)))
    initial: dict[str, dict[str, str] | list[str]] = {}
    runners: dict[str, Runner | None] = dict.fromkeys(PHASES)
    effects: dict[str, Effects] = {}
    for d in parsed.decls:
        if isinstance(d, n.TableDecl):
            initial[d.name] = {k.value: v.value for k, v in d.entries}
        elif isinstance(d, n.AclDecl):
            initial[d.name] = [e.value for e in d.entries]
        elif d.body and not _default_only(d):
            # an empty sub, or one that only returns the phase's default, is no sub: the
            # pipeline skips the phase's rules
            runners[d.name] = _Compiler(d.name, max_restarts).sub(d.body)
            effects[d.name] = sub_effects(d.body)
    return Rules(name, source, runners, declared, initial, max_restarts, effects)


#: What each phase does when its sub ends without an action (recv's depends on the method).
_DEFAULT_RETURN = {
    "hash": "lookup",
    "hit": "deliver",
    "miss": "fetch",
    "pass": "fetch",
    "fetch": "deliver",
    "deliver": "deliver",
    "error": "deliver",
}


def _default_only(sub: n.Sub) -> bool:
    body = sub.body
    return (
        len(body) == 1
        and isinstance(body[0], n.Return)
        and body[0].action == _DEFAULT_RETURN.get(sub.name)
    )


def _check_value(v: str, line: int, what: str) -> str:
    if "\n" in v or "\r" in v or "\0" in v:
        raise RulesRuntimeError(f"{what}: a line break or NUL in a header value", line)
    if len(v) > MAX_STRING:
        raise RulesRuntimeError(f"string longer than {MAX_STRING} characters", line)
    return v


class _Compiler:
    def __init__(self, phase: str, max_restarts: int) -> None:
        self.phase = phase
        self.max_restarts = max_restarts

    def sub(self, body: list[n.Stmt]) -> Runner:
        """The sub's closure: its statements, and the one guard that turns any failure
        into a RulesRuntimeError (rules' own errors carry their line already)."""
        run, phase = self.seq(body), self.phase

        def sub(env: Env) -> Outcome | None:
            try:
                out = run(env)
            except RulesRuntimeError:
                raise
            except Exception as exc:  # a bug or a bad Env: still only RulesRuntimeError
                raise RulesRuntimeError(f"sub {phase}: {type(exc).__name__}: {exc}") from exc
            if out is not None and env.trace is not None:
                env.trace.append((phase, out.line, out.kind.value))
            return out

        return sub

    def step(self, s: n.Stmt) -> tuple[Getter | None, Runner, int]:
        """(condition or None, what to run, the if's line or 0): a plain ``if`` without
        ``elif``/``else`` is run by the loop itself, one call less per rule."""
        if isinstance(s, n.If) and len(s.branches) == 1 and s.orelse is None:
            cond, body = s.branches[0]
            return compile_expr(cond), self.seq(body), cond.span.line
        return None, self.stmt(s), 0

    def seq(self, body: list[n.Stmt]) -> Runner:
        items = tuple(self.step(s) for s in body)
        phase = self.phase
        if len(items) == 1 and items[0][0] is None:
            return items[0][1]

        def seq(env: Env) -> Outcome | None:
            for cond, step, if_line in items:
                if cond is None or cond(env):
                    if if_line and env.trace is not None:
                        env.trace.append((phase, if_line, "if"))
                    out = step(env)
                    if out is not None:
                        return out
            return None

        return seq

    def stmt(self, s: n.Stmt) -> Runner:
        if isinstance(s, n.If):
            return self.if_(s)
        if isinstance(s, n.Assign):
            return self.assign(s)
        if isinstance(s, n.Unset):
            attr, name = header_parts(s.target) or ("", "")
            scope = _SCOPES[attr]

            def unset(env: Env) -> None:
                getattr(env, attr).pop(name, None)
                env.edits.append((scope, "unset", name, ""))

            return unset
        if isinstance(s, n.Return):
            if s.action == "restart":
                return self.restart(None, s.span.line)
            out = Outcome(Kind(s.action), line=s.span.line)
            return lambda env: out
        if isinstance(s, n.RateLimit):
            return self.ratelimit(s)
        if isinstance(s, n.CallStmt):  # hash_data
            value = compile_expr(s.args[0])
            return lambda env: env.hash_parts.append(value(env))
        assert isinstance(s, n.Action)
        return self.action(s)

    def if_(self, s: n.If) -> Runner:
        branches = tuple((compile_expr(c), self.seq(body), c.span.line) for c, body in s.branches)
        orelse = self.seq(s.orelse) if s.orelse else None
        phase = self.phase

        def if_(env: Env) -> Outcome | None:
            for cond, body, line in branches:
                if cond(env):
                    if env.trace is not None:
                        env.trace.append((phase, line, "if"))
                    return body(env)
            return None if orelse is None else orelse(env)

        return if_

    def assign(self, s: n.Assign) -> Runner:
        value, line, target = compile_expr(s.value), s.span.line, s.target  # type: ignore[arg-type]
        parts = header_parts(target)
        if parts is not None:
            attr, name = parts
            scope, append = _SCOPES[attr], s.op == "append"
            if isinstance(s.value, n.Str) and not append and _BAD_VALUE(s.value.value) is None:
                # a literal: checked now, not per request
                const, headers_of = s.value.value, operator.attrgetter(attr)
                edit = (scope, "set", name, const)

                def set_const(env: Env) -> None:
                    headers_of(env)[name] = const
                    env.edits.append(edit)

                return set_const

            headers_of = operator.attrgetter(attr)
            checked = isinstance(s.value, n.Str) and _BAD_VALUE(s.value.value) is None
            if append and checked:
                const = s.value.value  # type: ignore[union-attr]
                edit = (scope, "append", name, const)

                def append_const(env: Env) -> None:
                    headers: dict[str, str] = headers_of(env)
                    old = headers.get(name)
                    if old is None:
                        headers[name] = const
                    else:
                        v = old + ", " + const
                        if len(v) > MAX_STRING:
                            raise RulesRuntimeError(
                                f"string longer than {MAX_STRING} characters", line
                            )
                        headers[name] = v
                    env.edits.append(edit)

                return append_const
            if append:

                def append_header(env: Env) -> None:
                    v = _check_value(value(env), line, target)
                    headers: dict[str, str] = headers_of(env)
                    old = headers.get(name)
                    headers[name] = v if old is None else capped(old + ", " + v, line)
                    env.edits.append((scope, "append", name, v))

                return append_header

            def set_header(env: Env) -> None:
                v = value(env)
                if "\n" in v or "\r" in v or "\0" in v or len(v) > MAX_STRING:
                    v = _check_value(v, line, target)  # raises
                headers_of(env)[name] = v
                env.edits.append((scope, "set", name, v))

            return set_header
        if target == "req.url":

            def set_url(env: Env) -> None:
                url: str = capped(value(env), line)
                if not url.startswith("/") or _BAD_URL(url) is not None:
                    raise RulesRuntimeError(f"req.url {url[:80]!r} is not a path", line)
                env.url = url
                env.path, _, env.query = url.partition("?")
                env.url_changed = True

            return set_url
        if target == "req.backend":

            def set_backend(env: Env) -> None:
                env.backend = capped(value(env), line)

            return set_backend
        if target == "resp.status":

            def set_status(env: Env) -> None:
                status: int = value(env)
                if not 100 <= status <= 599:
                    raise RulesRuntimeError(f"resp.status {status} is not a status", line)
                env.resp_status = status

            return set_status
        key = target.rsplit(".", 1)[1]  # beresp.ttl / swr / sie
        attr = "beresp_" + key

        def set_window(env: Env) -> None:
            seconds = float(value(env))
            setattr(env, attr, seconds)
            env.overrides[key] = seconds

        return set_window

    def restart(self, backend: Getter | None, line: int) -> Runner:
        limit = self.max_restarts
        too_many = Outcome(Kind.ERROR, 503, f"too many restarts (at most {limit})", line=line)
        plain = Outcome(Kind.RESTART, line=line)

        def restart(env: Env) -> Outcome:
            if env.restarts >= limit:
                return too_many
            if backend is None:
                return plain
            return Outcome(Kind.RESTART, backend=capped(backend(env), line), line=line)

        return restart

    def ratelimit(self, s: n.RateLimit) -> Runner:
        assert s.name is not None and s.count is not None and s.per is not None
        name, count, per, line = s.name.value, s.count.value, s.per.seconds, s.span.line
        denied = Outcome(
            Kind.RATELIMIT, 429, f"rate limit {name} exceeded", name=name, rate=count,
            per=per, line=line,
        )  # fmt: skip

        def ratelimit(env: Env) -> Outcome | None:
            env.effects += 1  # a token was taken: the next run may decide otherwise
            limiter = env.limiter
            if limiter is None or limiter(name, env.client_identity or env.client_ip, count, per):
                return None
            return denied

        return ratelimit

    def action(self, s: n.Action) -> Runner:
        kind, line = s.kind, s.span.line
        args = [compile_expr(a) for a in s.args]
        arg = args[0] if args else None
        status = s.status.value if s.status is not None else 0
        if kind == "restart":
            return self.restart(arg, line)
        if kind == "log":
            assert arg is not None
            return lambda env: env.log_lines.append(
                capped(arg(env), line).replace("\r", "\\r").replace("\n", "\\n")
            )
        if kind == "add":  # surrogate_key: space-separated keys
            assert arg is not None
            return lambda env: env.surrogate_keys.extend(capped(arg(env), line).split())
        if kind in ("error", "block"):
            k = Kind.ERROR if kind == "error" else Kind.BLOCK
            status = status if kind == "error" else 403
            default = "blocked" if kind == "block" else ""
            if arg is None or isinstance(s.args[0], n.Str):
                reason = s.args[0].value if s.args else default  # type: ignore[attr-defined]
                out = Outcome(k, status, reason, line=line)
                return lambda env: out
            dynamic = arg
            return lambda env: Outcome(k, status, capped(dynamic(env), line), line=line)
        if kind == "redirect":
            assert arg is not None
            where = arg

            def redirect(env: Env) -> Outcome:
                location = _check_value(where(env), line, "redirect")
                return Outcome(Kind.REDIRECT, status, location=location, line=line)

            return redirect
        assert kind == "synthetic" and arg is not None
        body = arg
        headers = tuple((h.lower(), compile_expr(e)) for h, _, e in s.headers)

        def synthetic(env: Env) -> Outcome:
            fields = tuple((h, _check_value(g(env), line, h)) for h, g in headers)
            return Outcome(Kind.SYNTHETIC, status, body=capped(body(env), line),
                           headers=fields, line=line)  # fmt: skip

        return synthetic
