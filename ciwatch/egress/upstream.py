"""A proxy configured for the whole job before ciwatch started (``HTTPS_PROXY``, ``ALL_PROXY``,
``HTTP_PROXY``, ``NO_PROXY`` in ciwatch's own environment): the job's network presumably lets
only that proxy out, so ciwatch's proxy goes out through it too, and the build's connections
to it are judged by what they ask it for (it is the job's, not the build's, choice).

Pure: parsing and matching only; the proxy's addresses are resolved by the caller."""

from __future__ import annotations

import ipaddress
from base64 import b64decode, b64encode
from collections.abc import Iterable, Mapping
from urllib.parse import unquote, urlsplit

from ciwatch.dataclass import dataclass, field

# Most specific first: a transparent connection may carry TLS or not, and a job that sets
# HTTPS_PROXY means it for everything that leaves (a CI network that only allows its proxy).
_VARIABLES = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "http_proxy", "HTTP_PROXY")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class ProxyUrl:
    scheme: str
    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)
    """``Basic ...`` from the URL's userinfo: sent to this proxy only, never recorded."""

    @property
    def credentials(self) -> str | None:
        """``user:password`` as the URL gave them (what mitmproxy's ``upstream_auth`` takes)."""
        if self.authorization is None:
            return None
        return b64decode(self.authorization.removeprefix("Basic ")).decode(errors="replace")

    @property
    def hostport(self) -> str:
        """``host:port`` (IPv6 in brackets), with no credentials: what the record keeps."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_proxy_url(value: str) -> ProxyUrl | None:
    """``http://user:pass@proxy:3128``, ``proxy:3128`` (curl's reading: http) -> ProxyUrl;
    None for what ciwatch can't use as an upstream (socks, empty, malformed)."""
    value = value.strip()
    if not value:
        return None
    if "://" not in value:
        value = "http://" + value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    authorization = None
    if parts.username is not None:
        user_pass = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + b64encode(user_pass.encode()).decode()
    return ProxyUrl(scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme], authorization)


@dataclass(frozen=True)
class NoProxy:
    """``NO_PROXY``: names (a leading dot or none: the name and its subdomains), addresses,
    CIDRs, ``*``; a ``:port`` suffix is ignored (curl's and Go's readings differ on it)."""

    names: tuple[str, ...] = ()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    everything: bool = False

    @classmethod
    def parse(cls, value: str) -> NoProxy:
        names: list[str] = []
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        everything = False
        for raw in value.replace(" ", ",").split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                everything = True
                continue
            if entry.startswith("[") and "]" in entry:
                entry = entry[1 : entry.index("]")]
            elif entry.count(":") == 1:
                entry = entry.split(":", 1)[0]
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.append(entry.lstrip("*").lstrip(".").rstrip("."))
        return cls(tuple(filter(None, names)), tuple(networks), everything)

    def bypasses(self, address: str, names: Iterable[str] = ()) -> bool:
        """Whether a connection to ``address`` (which DNS said is ``names``) goes direct."""
        if self.everything:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            names = [address, *names]
        else:
            if any(ip in network for network in self.networks if network.version == ip.version):
                return True
        for name in names:
            name = name.lower().rstrip(".")
            if any(name == entry or name.endswith("." + entry) for entry in self.names):
                return True
        return False


@dataclass(frozen=True)
class JobProxy:
    """The job's proxy: where ciwatch's own connections go, and the proxies the build may
    use as the job configured them."""

    upstream: ProxyUrl
    """What ciwatch tunnels through (the first of https_proxy, all_proxy, http_proxy)."""
    configured: tuple[ProxyUrl, ...]
    """Every distinct proxy the variables name (the build's clients pick by scheme)."""
    no_proxy: NoProxy

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> JobProxy | None:
        found: dict[tuple[str, int], ProxyUrl] = {}
        for variable in _VARIABLES:
            proxy = parse_proxy_url(env.get(variable, ""))
            if proxy is not None:
                found.setdefault((proxy.host, proxy.port), proxy)
        if not found:
            return None
        no_proxy = NoProxy.parse(env.get("no_proxy") or env.get("NO_PROXY") or "")
        configured = tuple(found.values())
        return cls(configured[0], configured, no_proxy)

    def authorization_for(self, host: str, port: int) -> str | None:
        """The credentials the job gave for the proxy at ``host:port`` (by name or address)."""
        for proxy in self.configured:
            if (proxy.host, proxy.port) == (host.lower(), port):
                return proxy.authorization
        return None
