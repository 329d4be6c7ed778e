"""Talking to the upstream index: pooled keep-alive HTTP/1.1 connections with timeouts."""

from pkgedge.upstream.client import UpstreamPool, UpstreamResponse

__all__ = ["UpstreamPool", "UpstreamResponse"]
