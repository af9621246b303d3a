"""What real Debian installs taught the rules (tests/corpus/test_corpus_debian.py), on built records:
dpkg's maintainer scripts setting up services, the scheduler, system users and their files' modes
are dpkg's job (reported, not counted, with the reason); the same from an npm hook, from dpkg run
by an npm hook, or from anything posing as dpkg still counts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ciwatch.record.events import FileHash
from ciwatch.record.vocabulary import FileOp
from ciwatch.rules import Finding
from ciwatch.verdict import Verdict, VerdictKind
from tests.test_rules import NPM_CLI, Build, Proc, found

DPKG = "/usr/bin/dpkg"
UNIT = "/lib/systemd/system/cron.service"
WANTS = "/etc/systemd/system/multi-user.target.wants/cron.service"
WRITE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


@pytest.fixture
def build(tmp_path: Path) -> Build:
    """``apt-get install`` at the root of the build (the builder's root, exec'd again)."""
    made = Build(tmp_path, command=("apt-get", "install", "-y", "cron"))
    made.root.exec(["apt-get", "install", "-y", "cron"], path="/usr/bin/apt-get")
    return made


def dpkg_under(parent: Proc, dpkg: str = DPKG) -> Proc:
    return parent.spawn([dpkg, "--status-fd", "16", "--configure", "-a"], path=dpkg)


def maintainer_script(dpkg: Proc, package: str = "cron", script: str = "postinst", *, path: str | None = None) -> Proc:
    """What dpkg runs: the script from its database, with dpkg's identity variables."""
    path = path or f"/var/lib/dpkg/info/{package}.{script}"
    env = {"DPKG_MAINTSCRIPT_PACKAGE": package, "DPKG_MAINTSCRIPT_NAME": script, "DPKG_MAINTSCRIPT_ARCH": "amd64"}
    return dpkg.spawn(
        ["/bin/sh", path, "configure", ""], path=path, cwd="/", env=env, package={"name": package, "version": "3.0"}
    )


def enable_unit(script: Proc) -> None:
    """deb-systemd-helper's systemctl links the package's unit into a target's wants."""
    helper = script.spawn(["/usr/bin/perl", "/usr/bin/deb-systemd-helper", "enable", "cron.service"])
    helper.spawn(["/usr/bin/systemctl", "enable", "cron.service"]).write(WANTS, FileOp.SYMLINK, target=UNIT)


def add_system_user(script: Proc) -> None:
    """adduser runs useradd, which reads the shadow file and replaces /etc/passwd."""
    adduser = script.spawn(["/usr/bin/perl", "-w", "/usr/sbin/adduser", "--system", "uuidd"], path="/usr/sbin/adduser")
    useradd = adduser.spawn(["/usr/sbin/useradd", "-r", "uuidd"])
    useradd.read("/etc/shadow")
    useradd.write("/etc/passwd.4242")
    useradd.write("/etc/passwd.4242", FileOp.LINK, target="/etc/passwd.lock")
    useradd.write("/etc/passwd+")
    useradd.write("/etc/passwd+", FileOp.RENAME, target="/etc/passwd")


def counted(verdict: Verdict, rule: str) -> list[Finding]:
    return [f for f in found(verdict, rule) if f.excepted is None]


def not_counted(verdict: Verdict, rule: str) -> list[Finding]:
    return [f for f in found(verdict, rule) if f.excepted is not None]


# -- services ------------------------------------------------------------------------------


def test_a_maintainer_script_enabling_its_unit_is_reported_but_not_counted(build: Build) -> None:
    enable_unit(maintainer_script(dpkg_under(build.root)))
    verdict = build.judge()
    assert verdict.verdict is VerdictKind.PASS
    (finding,) = not_counted(verdict, "persistence-write")
    assert finding.ecosystem == "dpkg" and finding.package == "cron@3.0" and finding.hook == "postinst"
    assert finding.excepted is not None and "dpkg maintainer script (postinst of cron@3.0)" in finding.excepted


def test_an_npm_hook_enabling_a_unit_still_counts(tmp_path: Path) -> None:
    npm_build = Build(tmp_path)
    enable_unit(npm_build.hook("evil"))
    verdict = npm_build.judge()
    assert verdict.verdict is VerdictKind.FAIL
    assert [f.package for f in counted(verdict, "persistence-write")] == ["evil@1.0.0"]


def test_dpkg_run_by_an_npm_hook_gets_no_exception(tmp_path: Path) -> None:
    """``dpkg -i evil.deb`` from a postinstall: the maintainer script is that hook's doing."""
    npm_build = Build(tmp_path)
    enable_unit(maintainer_script(dpkg_under(npm_build.hook("evil"))))
    assert npm_build.judge().verdict is VerdictKind.FAIL


@pytest.mark.parametrize("dpkg", ["/tmp/x/dpkg", "/usr/local/bin/dpkg"])
def test_a_program_posing_as_dpkg_gets_no_exception(build: Build, dpkg: str) -> None:
    """Anything named dpkg can set DPKG_MAINTSCRIPT_* on its child: only the system's dpkg counts."""
    enable_unit(maintainer_script(dpkg_under(build.root, dpkg)))
    assert len(counted(build.judge(), "persistence-write")) == 1


def test_a_script_dpkg_did_not_take_from_its_database_gets_no_exception(build: Build) -> None:
    enable_unit(maintainer_script(dpkg_under(build.root), path="/tmp/cron.postinst"))
    assert len(counted(build.judge(), "persistence-write")) == 1


def test_a_maintainer_script_a_hook_rewrote_gets_no_exception(build: Build) -> None:
    """An npm hook that edits an installed package's prerm runs its code as dpkg's on removal."""
    npm = build.root.spawn(["node", NPM_CLI, "install"])
    hook = build.hook("evil", parent=npm).spawn(["/bin/sh", "-c", "echo x >> f"])
    hook.write("/var/lib/dpkg/info/cron.prerm", flags=WRITE)
    enable_unit(maintainer_script(dpkg_under(build.root), script="prerm"))
    assert len(counted(build.judge(), "persistence-write")) == 1


# -- places that are no maintainer script's business ---------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/home/ci/.bashrc", "/etc/sudoers.d/cron", "/root/.ssh/authorized_keys", "/etc/ld.so.preload"],
)
def test_a_maintainer_script_writing_outside_system_setup_still_counts(build: Build, path: str) -> None:
    maintainer_script(dpkg_under(build.root)).write(path)
    assert len(counted(build.judge(), "persistence-write")) == 1


def test_a_job_in_the_schedulers_spool_counts_its_bookkeeping_does_not(build: Build) -> None:
    """at's postinst creates the spool's ``.SEQ`` counter: set-up. A user's crontab is a job."""
    script = maintainer_script(dpkg_under(build.root), "at")
    script.write("/var/spool/cron/atjobs/.SEQ")
    script.spawn(["/usr/bin/chmod", "1730", "/var/spool/cron/crontabs"]).write(
        "/var/spool/cron/crontabs", FileOp.CHMOD, flags=0o1730
    )
    script.write("/var/spool/cron/crontabs/root")
    verdict = build.judge()
    assert [f.message.rsplit(" ", 1)[1] for f in counted(verdict, "persistence-write")] == [
        "/var/spool/cron/crontabs/root"
    ]
    assert len(not_counted(verdict, "persistence-write")) == 2


# -- system users -----------------------------------------------------------------------------


def test_adding_a_system_user_in_a_maintainer_script_is_not_counted(build: Build) -> None:
    add_system_user(maintainer_script(dpkg_under(build.root), "uuid-runtime"))
    verdict = build.judge()
    assert verdict.verdict is VerdictKind.PASS, [f.message for f in verdict.counted]
    (read,) = not_counted(verdict, "credential-read")
    assert read.excepted is not None and "useradd, the system's account tool" in read.excepted
    assert {f.message.split(": ", 1)[1] for f in not_counted(verdict, "persistence-write")} >= {
        "/etc/passwd",
        "/etc/passwd.4242 as /etc/passwd.lock",
    }


def test_an_npm_hook_adding_a_user_counts(tmp_path: Path) -> None:
    npm_build = Build(tmp_path)
    add_system_user(npm_build.hook("evil"))
    verdict = npm_build.judge()
    assert counted(verdict, "credential-read") and counted(verdict, "persistence-write")
    assert any(f.message.endswith(": /etc/passwd") for f in counted(verdict, "persistence-write"))


def test_a_shadow_read_after_adduser_in_the_same_script_still_counts(build: Build) -> None:
    """adduser's excepted read must not hide the script's own ``cat /etc/shadow``."""
    script = maintainer_script(dpkg_under(build.root), "uuid-runtime")
    add_system_user(script)
    script.spawn(["/usr/bin/cat", "/etc/shadow"]).read("/etc/shadow")
    (finding,) = counted(build.judge(), "credential-read")
    assert finding.lineage.endswith("> cat")


def test_debconfs_frontend_may_look_users_up_a_perl_one_liner_may_not(build: Build) -> None:
    script = maintainer_script(dpkg_under(build.root), "sysstat")
    frontend = "/usr/share/debconf/frontend"
    script.spawn(["/usr/bin/perl", "-w", frontend, "/var/lib/dpkg/info/sysstat.postinst"], path=frontend).read(
        "/etc/shadow"
    )
    script.spawn(["/usr/bin/perl", "-e", 'print((getpwnam "root")[1])']).read("/etc/shadow")
    verdict = build.judge()
    assert [f.lineage.rsplit("> ", 1)[1] for f in counted(verdict, "credential-read")] == ["perl -e"]
    assert len(not_counted(verdict, "credential-read")) == 1


# -- file modes -----------------------------------------------------------------------------------


def install_crontab(build: Build) -> None:
    """dpkg unpacks /usr/bin/crontab (a new file renamed into place)."""
    build.root.spawn([DPKG, "--unpack", "cron.deb"], path=DPKG).write("/usr/bin/crontab.dpkg-new", flags=WRITE)
    build.root.spawn([DPKG, "--unpack", "cron.deb"], path=DPKG).write(
        "/usr/bin/crontab.dpkg-new", FileOp.RENAME, target="/usr/bin/crontab"
    )
    build.add(FileHash(path="/usr/bin/crontab", sha256="ab" * 32, size=1, mode=0o755, file_type="elf", written_by=1))


def statoverride(script: Proc, path: str) -> None:
    helper = script.spawn(["/usr/bin/dpkg-statoverride", "--update", "--add", "root", "crontab", "2755", path])
    helper.write(path, FileOp.CHMOD, flags=0o2755)


def test_a_maintainer_script_setting_the_mode_of_a_file_dpkg_installed_is_not_counted(build: Build) -> None:
    install_crontab(build)
    statoverride(maintainer_script(dpkg_under(build.root)), "/usr/bin/crontab")
    verdict = build.judge()
    assert verdict.verdict is VerdictKind.PASS
    (finding,) = not_counted(verdict, "executable-write")
    assert finding.excepted is not None and "installed by dpkg in this run" in finding.excepted


def test_making_a_file_that_was_on_disk_before_setuid_counts(build: Build) -> None:
    """``chmod u+s /usr/bin/bash`` from a postinst: not the package's own file."""
    statoverride(maintainer_script(dpkg_under(build.root)), "/usr/bin/bash")
    assert len(counted(build.judge(), "executable-write")) == 1


def test_new_bytes_a_maintainer_script_writes_on_path_count(build: Build) -> None:
    install_crontab(build)
    script = maintainer_script(dpkg_under(build.root))
    script.write("/usr/bin/crontab")  # new content, not a mode change
    statoverride(script, "/usr/bin/crontab")
    assert len(counted(build.judge(), "executable-write")) == 1


def test_an_npm_hook_changing_the_mode_of_a_file_dpkg_installed_counts(tmp_path: Path) -> None:
    npm_build = Build(tmp_path)
    install_crontab(npm_build)
    statoverride(npm_build.hook("evil"), "/usr/bin/crontab")
    assert len(counted(npm_build.judge(), "executable-write")) == 1


# -- alternatives -------------------------------------------------------------------------------


def test_update_alternatives_links_are_no_finding(build: Build) -> None:
    script = maintainer_script(dpkg_under(build.root), "nano")
    alternatives = script.spawn(["/usr/bin/update-alternatives", "--install", "/usr/bin/editor", "editor"])
    alternatives.write("/etc/alternatives/editor", FileOp.SYMLINK, target="/bin/nano")
    alternatives.write("/usr/bin/editor", FileOp.SYMLINK, target="/etc/alternatives/editor")
    assert build.judge().findings == ()
