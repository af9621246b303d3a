"""The proxy's addon chain: mitmproxy's events dispatched through a per-hook index reach the
same handlers in the same order as mitmproxy's own dispatch, an addon added later is called,
an exception in one handler doesn't stop the others, ``AddonHalt`` stops the chain; and of
mitmproxy's default addons only those ciwatch's proxy uses are loaded."""

from __future__ import annotations

import asyncio

from mitmproxy import exceptions, master, options
from mitmproxy.addons import default_addons
from mitmproxy.proxy.layers import http as http_layer
from mitmproxy.test import tflow

from ciwatch.egress.hookchain import NEEDED_DEFAULT_ADDONS, HookIndex, needed_default_addons


class Calls:
    def __init__(self, name: str, log: list[str], fail: bool = False, halt: bool = False) -> None:
        self.name, self.log, self.fail, self.halt = name, log, fail, halt

    def request(self, flow: object) -> None:
        self.log.append(self.name)
        if self.fail:
            raise RuntimeError("an addon's bug")
        if self.halt:
            raise exceptions.AddonHalt()


class Nested:
    def __init__(self, log: list[str]) -> None:
        self.addons = [Calls("child", log)]


class AsyncCalls:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def request(self, flow: object) -> None:
        await asyncio.sleep(0)
        self.log.append("async")


async def _dispatch(index: bool) -> list[str]:
    log: list[str] = []
    instance = master.Master(options.Options())
    if index:
        HookIndex.install(instance.addons)
    instance.addons.add(Calls("first", log), Nested(log), AsyncCalls(log), Calls("broken", log, fail=True))
    await instance.addons.trigger_event(http_layer.HttpRequestHook(tflow.tflow()))
    instance.addons.add(Calls("late", log), Calls("halts", log, halt=True), Calls("never", log))
    await instance.addons.trigger_event(http_layer.HttpRequestHook(tflow.tflow()))
    await instance.addons.trigger_event(http_layer.HttpResponseHook(tflow.tflow(resp=True)))  # no handler
    return log


def test_the_index_calls_what_mitmproxys_dispatch_calls_in_its_order() -> None:
    async def both() -> tuple[list[str], list[str]]:
        # One loop for both masters: each installs a log handler bound to its loop.
        return await _dispatch(index=False), await _dispatch(index=True)

    expected = ["first", "child", "async", "broken"]
    expected += ["first", "child", "async", "broken", "late", "halts"]
    assert asyncio.run(both()) == (expected, expected)


def test_only_the_default_addons_the_proxy_uses_are_loaded() -> None:
    kept = {type(addon).__name__ for addon in needed_default_addons()}
    assert kept == NEEDED_DEFAULT_ADDONS, "a kept addon is missing from this mitmproxy"
    dropped = {type(addon).__name__ for addon in default_addons()} - kept
    # mitmproxy's onboarding app answers requests to mitm.it itself: a build would see it.
    assert "Onboarding" in dropped
