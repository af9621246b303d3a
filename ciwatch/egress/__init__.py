"""Egress: the build's outbound traffic through mitmproxy, attributed to the process that
opened it. ``EgressRun`` is the one object the session uses."""

from ciwatch.egress.run import EgressRun

__all__ = ["EgressRun"]
