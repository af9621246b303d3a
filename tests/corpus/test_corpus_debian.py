"""The real-world corpus for Debian packages: one real ``apt-get install`` of small packages whose
maintainer scripts do what real ones do, from the archive apt is configured for, under ``ciwatch
run --policy policies/default.yaml`` in the default mode (trace plus the redirect proxy).

What their maintainer scripts do: enable systemd units and init scripts (``deb-systemd-helper``,
``update-rc.d``, ``invoke-rc.d``, which the machine's ``policy-rc.d`` or the missing runlevel
keeps from starting anything), update-alternatives (nano, vim-tiny, sysstat), add system users
and groups (tcpdump, uuid-runtime, dnsmasq-base, cron-daemon-common: adduser and useradd read
/etc/shadow), dpkg-statoverride (cron's setgid crontab), set up the at and cron spools, ucf and
debconf (sysstat), setcap (iputils-ping), and the triggers they fire (ldconfig through libc-bin,
man-db, dbus). The verdict must count nothing of medium or higher; what is reported but not
counted carries its reason.

The packages are downloaded into a private cache (the download goes through ciwatch's proxy;
the machine's cache is untouched) and purged afterwards, untraced, with every dependency the
install brought in; a previous run cut short is purged first (``_LEFT_BEHIND`` remembers what
it installed). The system users and groups the postinst scripts created stay, as they do when
a package is purged. Needs root (it installs into the machine's dpkg database)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ciwatch.record.events import DnsQuery, RegistryAllowed
from tests.corpus.support import CORPUS_MARKS, assert_judged_ordinary, watch

pytestmark = [*CORPUS_MARKS, pytest.mark.skipif(os.geteuid() != 0, reason="installs Debian packages: needs root")]

#: Small packages whose maintainer scripts do the things real ones do (module docstring). None
#: conflicts with what a Debian machine has (chrony would remove systemd-timesyncd: left out).
PACKAGES = (
    "anacron",
    "at",
    "cron",
    "desktop-file-utils",
    "dnsmasq-base",
    "iputils-ping",
    "logrotate",
    "nano",
    "sysstat",
    "tcpdump",
    "uuid-runtime",
    "vim-tiny",
    "whois",
)
#: What the packages' files fire: ldconfig (libpcap0.8's library) and man-db's index.
TRIGGERED = ("libc-bin", "man-db")
#: The packages a run installed, kept until its finalizer purged them (a run cut short leaves it).
_LEFT_BEHIND = Path("/var/tmp/ciwatch-corpus-debian.installed")
_APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
_LOCK = ["-o", "DPkg::Lock::Timeout=300"]


def installed_packages() -> dict[str, str]:
    """package -> version of every installed package, as dpkg reports them."""
    listing = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version} ${db:Status-Status}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {
        name: version
        for name, version, status in (line.split() for line in listing.splitlines())
        if status == "installed"
    }


def purge(packages: list[str]) -> None:
    if packages:
        subprocess.run(
            ["apt-get", "purge", "-y", "-q", *_LOCK, *packages],
            env={**os.environ, **_APT_ENV},
            capture_output=True,
            check=True,
        )


def private_apt_dir(base: Path, name: str) -> Path:
    """A directory apt downloads into: its ``partial`` belongs to apt's unprivileged ``_apt``."""
    directory = base / name
    (directory / "partial").mkdir(parents=True)
    for path in (base, directory):
        path.chmod(0o755)
    subprocess.run(["chown", "_apt:root", str(directory / "partial")], check=True)
    return directory


@pytest.fixture
def to_install() -> Iterator[list[str]]:
    """The corpus packages this machine doesn't have, purged again (with the dependencies they
    brought) when the test ends."""
    if _LEFT_BEHIND.exists():
        purge(_LEFT_BEHIND.read_text().split())
        _LEFT_BEHIND.unlink()
    before = installed_packages()
    wanted = [package for package in PACKAGES if package not in before]
    if len(wanted) < 8:
        pytest.skip(f"this machine already has most of the corpus installed: {sorted(set(PACKAGES) - set(wanted))}")
    plan = subprocess.run(
        ["apt-get", "install", "-s", "--no-install-recommends", *wanted], capture_output=True, text=True, check=True
    ).stdout
    removed = [line for line in plan.splitlines() if line.startswith("Remv ")]
    assert not removed, f"installing the corpus would remove packages of this machine: {removed}"
    # What apt plans to install, dependencies included: only these are purged afterwards (not a
    # package something else on the machine installs meanwhile).
    planned = {line.split()[1] for line in plan.splitlines() if line.startswith("Inst ")}
    _LEFT_BEHIND.write_text(" ".join(sorted(planned)))
    try:
        yield wanted
    finally:
        purge(sorted(planned & (set(installed_packages()) - set(before))))
        _LEFT_BEHIND.unlink(missing_ok=True)


def test_apt_get_install_of_packages_with_maintainer_scripts_is_ordinary(tmp_path: Path, to_install: list[str]) -> None:
    archives = private_apt_dir(tmp_path, "archives")
    corpus = watch(
        [
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            *_LOCK,
            "-o",
            f"Dir::Cache::archives={archives}",
            *to_install,
        ],
        tmp_path,
        tmp_path / "out",
        env=_APT_ENV,
    )
    now = installed_packages()
    # Every maintainer script dpkg keeps for a package the run installed ran as its hook, named
    # with the version dpkg installed (whois has none: it only fires man-db's trigger).
    info = Path("/var/lib/dpkg/info")
    expected = {
        ("dpkg", package, now[package], script)
        for package in to_install
        for script in ("preinst", "postinst")
        if (info / f"{package}.{script}").exists() or any(info.glob(f"{package}:*.{script}"))
    }
    expected |= {("dpkg", package, now[package], "postinst") for package in TRIGGERED}
    hooked = sorted({package for _, package, _, _ in expected})
    assert len(hooked) >= 8, hooked
    assert_judged_ordinary(corpus, hooked)
    assert expected <= corpus.hooks(), sorted(expected - corpus.hooks())
    # What is reported but not counted says why (a reviewer audits it), and is dpkg's own.
    for finding in corpus.not_counted:
        assert finding["ecosystem"] == "dpkg" and finding["excepted"].startswith("not counted: "), finding
    print(f"corpus: {len(corpus.hooks())} hooks, {len(corpus.not_counted)} findings not counted", end=" ")
    print(json.dumps(sorted({(f["rule"], f["excepted"].split(" (")[0]) for f in corpus.not_counted})))


def test_apt_get_update_with_a_cold_cache_is_ordinary(tmp_path: Path) -> None:
    """``apt-get update`` into empty lists of its own (the machine's lists are untouched): apt asks
    its mirror's SRV record (``_http._tcp.<mirror>``) before fetching; that lookup is the mirror's
    own, not an unfamiliar host."""
    lists = private_apt_dir(tmp_path, "lists")
    corpus = watch(
        [
            "apt-get",
            "update",
            "-q",
            "-o",
            f"Dir::State::Lists={lists}",
            "-o",
            "Dir::Cache::pkgcache=",
            "-o",
            "Dir::Cache::srcpkgcache=",
        ],
        tmp_path,
        tmp_path / "out",
    )
    assert_judged_ordinary(corpus, [])
    assert any(lists.glob("*Packages*")), "apt fetched no package index"
    sites = subprocess.run(
        ["apt-get", "indextargets", "--format", "$(SITE)"], capture_output=True, text=True, check=True
    ).stdout.split()
    mirrors = {site.split("://", 1)[1].split("/", 1)[0].split(":")[0] for site in sites}
    assert mirrors <= {event.host for event in corpus.run.events(RegistryAllowed)}
    # apt asks the SRV record of an http:// mirror (not of an https:// one)
    http_mirrors = {
        site.split("://", 1)[1].split("/", 1)[0].split(":")[0] for site in sites if site.startswith("http:")
    }
    srv = {event.name for event in corpus.run.events(DnsQuery) if event.qtype == "SRV"}
    if http_mirrors:
        assert srv & {f"_http._tcp.{mirror}" for mirror in http_mirrors}, f"no SRV lookup of a mirror: {srv}"
    egress = [f for f in corpus.verdict["findings"] if f["rule"] == "unfamiliar-egress"]
    assert egress == [], egress
