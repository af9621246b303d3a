"""Egress: the build's outbound traffic through mitmproxy, attributed to the process that
opened it. ``ciwatch.egress.run.EgressRun`` is the one object the session uses; it is
imported only by runs that have a proxy (mitmproxy takes a while to import)."""
