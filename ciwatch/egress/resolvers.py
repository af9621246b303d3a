"""The DNS resolvers this machine is configured with."""

from __future__ import annotations


def system_resolvers(path: str = "/etc/resolv.conf") -> list[str]:
    servers = []
    try:
        with open(path) as stream:
            for line in stream:
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver":
                    servers.append(words[1].split("%")[0])
    except OSError:
        pass
    return servers
