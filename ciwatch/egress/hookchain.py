"""mitmproxy's addon chain, cut to what ciwatch's proxy uses and dispatched by hook name.

mitmproxy calls every event (a request's headers, each response, every connection's open and
close, an ``update`` after each flow event) on every addon of its chain in turn, whether or
not the addon has a method for it: a coroutine, a context manager and a ``getattr`` per addon
per event. With its ~30 default addons and ciwatch's 8, that dispatch was a third of the
proxy's CPU per registry download (bench/proxycost.py). Two cuts, neither changing what any
hook sees or the order it sees it in:

- ``needed_default_addons``: of mitmproxy's default addons, only those that serve ciwatch's
  proxy (the server, layer choice, TLS, upstream credentials, its own DNS resolver, the h2c
  guard, Alt-Svc in reverse mode). The rest act only on options ciwatch never sets (map,
  modify, replay, save, scripts, proxy auth, anticache...), or serve mitmproxy's onboarding
  app at ``mitm.it``, which a build has no business reaching. ``block_global`` (refusing
  clients at public addresses) is ``BuildOnly``'s job, which refuses every client that is not
  a process of the build.
- ``HookIndex``: the chain's handlers of each hook, found once (on the first event of that
  name after the chain last changed) instead of at every event.
"""

from __future__ import annotations

import inspect
from typing import Any

from mitmproxy import exceptions, hooks
from mitmproxy.addonmanager import AddonManager, safecall, traverse

NEEDED_DEFAULT_ADDONS = frozenset(
    {"Core", "DisableH2C", "Proxyserver", "DnsResolver", "NextLayer", "TlsConfig", "UpstreamAuth", "UpdateAltSvc"}
)
"""Class names of the default addons kept (mitmproxy 11 and 12 name them alike)."""


def needed_default_addons() -> list[Any]:
    from mitmproxy.addons import default_addons

    return [addon for addon in default_addons() if type(addon).__name__ in NEEDED_DEFAULT_ADDONS]


class HookIndex(AddonManager):  # type: ignore[misc]  # mitmproxy is untyped here
    """mitmproxy's addon manager, its asynchronous dispatch through a per-hook index of
    handlers: the same handlers in the same order, each exception caught and logged as
    mitmproxy does (``safecall``), ``AddonHalt`` ending the chain."""

    _handlers: dict[str, list[Any]]

    @classmethod
    def install(cls, manager: AddonManager) -> None:
        """Make the master's manager (created with the master, before any addon is added) one of
        these. Its class is switched rather than a new manager made: the master's options are
        already connected to the existing one."""
        manager.__class__ = cls
        assert isinstance(manager, HookIndex)
        manager._handlers = {}

    def _changed(self) -> None:
        self._handlers = {}

    def register(self, addon: Any) -> Any:
        self._changed()
        return super().register(addon)

    def add(self, *addons: Any) -> None:
        super().add(*addons)
        self._changed()

    def remove(self, addon: Any) -> None:
        super().remove(addon)
        self._changed()

    def clear(self) -> None:
        super().clear()
        self._changed()

    def handlers(self, name: str) -> list[Any]:
        found = self._handlers.get(name)
        if found is None:
            found = self._handlers[name] = [
                func for addon in traverse(self.chain) if callable(func := getattr(addon, name, None))
            ]
        return found

    async def trigger_event(self, event: hooks.Hook) -> None:
        handlers = self.handlers(event.name)
        if not handlers:
            return
        args = event.args()
        for func in handlers:
            try:
                with safecall():
                    result = func(*args)
                    if result is not None and inspect.isawaitable(result):
                        await result
            except exceptions.AddonHalt:
                return
