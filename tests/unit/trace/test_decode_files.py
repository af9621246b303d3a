"""The file decoders, over a fake tracee: paths resolved against cwd and dirfd as the
kernel would, flags and modes masked as the record keeps them."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ciwatch.record.events import FileWrite
from ciwatch.record.vocabulary import FileOp
from ciwatch.trace.decode import AT_FDCWD
from ciwatch.trace.decode import files as f
from ciwatch.trace.memory import TraceeMemory
from tests.unit.trace.fake import FakeMemory, args

O_WRONLY_CREAT_TRUNC = 0o1 | 0o100 | 0o1000
PID = 42


def test_open_resolves_against_the_cwd_and_keeps_the_flags() -> None:
    mem = FakeMemory(cwd="/work/project")
    event = f.decode_open(PID, args(mem.put_str("build/../out.txt"), O_WRONLY_CREAT_TRUNC, 0o644), mem)
    assert event == FileWrite(
        pid=PID, op=FileOp.OPEN, path="/work/project/out.txt", flags=O_WRONLY_CREAT_TRUNC, as_written="build/../out.txt"
    )


def test_openat_resolves_against_the_dirfd_and_at_fdcwd() -> None:
    mem = FakeMemory(cwd="/cwd", fds={7: "/etc"})
    assert f.decode_openat(PID, args(7, mem.put_str("passwd"), 0), mem).path == "/etc/passwd"
    assert f.decode_openat(PID, args(AT_FDCWD, mem.put_str("x"), 1), mem).path == "/cwd/x"
    absolute = f.decode_openat(PID, args(7, mem.put_str("/tmp/./y"), 1), mem)
    assert absolute.path == "/tmp/y"  # an absolute path ignores the dirfd


def test_openat2_reads_its_flags_from_open_how() -> None:
    mem = FakeMemory(cwd="/w")
    how = mem.put((0o1101).to_bytes(8, "little") + bytes(16))
    event = f.decode_openat2(PID, args(AT_FDCWD, mem.put_str("a"), how, 24), mem)
    assert (event.path, event.flags) == ("/w/a", 0o1101)
    unreadable = f.decode_openat2(PID, args(AT_FDCWD, mem.put_str("a"), 0xDEAD0000, 24), mem)
    assert unreadable.flags == 0


def test_an_empty_path_with_a_dirfd_is_the_directory_itself() -> None:
    mem = FakeMemory(fds={3: "/srv/dir"})
    assert f.decode_unlinkat(PID, args(3, mem.put_str(""), 0x200), mem) == FileWrite(
        pid=PID, op=FileOp.UNLINK, path="/srv/dir", flags=0x200, as_written=""
    )


def test_undecodable_bytes_survive_as_surrogates() -> None:
    mem = FakeMemory(cwd="/w")
    event = f.decode_unlink(PID, args(mem.put(b"caf\xe9\0")), mem)
    assert event.path == "/w/caf\udce9"


def test_creat_chmod_and_fchmod_keep_the_mode_bits_only() -> None:
    mem = FakeMemory(cwd="/w", fds={5: "/w/tool"})
    assert f.decode_creat(PID, args(mem.put_str("c"), 0o100755), mem).flags == 0o755
    assert f.decode_chmod(PID, args(mem.put_str("c"), 0o104755), mem) == FileWrite(
        pid=PID, op=FileOp.CHMOD, path="/w/c", flags=0o4755, as_written="c"
    )
    assert f.decode_fchmod(PID, args(5, 0o755), mem) == FileWrite(pid=PID, op=FileOp.CHMOD, path="/w/tool", flags=0o755)
    assert f.decode_fchmodat(PID, args(5, mem.put_str("sub"), 0o700, 0), mem).path == "/w/tool/sub"


def test_rename_and_link_record_both_ends() -> None:
    mem = FakeMemory(cwd="/w", fds={3: "/a", 4: "/b"})
    old, new = mem.put_str("x"), mem.put_str("y")
    assert f.decode_rename(PID, args(old, new), mem) == FileWrite(
        pid=PID, op=FileOp.RENAME, path="/w/x", target="/w/y", as_written="x", target_as_written="y"
    )
    assert f.decode_renameat(PID, args(3, old, 4, new, 1), mem) == FileWrite(
        pid=PID, op=FileOp.RENAME, path="/a/x", target="/b/y", as_written="x", target_as_written="y"
    )
    assert f.decode_link(PID, args(old, new), mem).op is FileOp.LINK
    assert f.decode_linkat(PID, args(3, old, 4, new, 0), mem) == FileWrite(
        pid=PID, op=FileOp.LINK, path="/a/x", target="/b/y", as_written="x", target_as_written="y"
    )


def test_symlink_keeps_its_target_as_text() -> None:
    mem = FakeMemory(cwd="/w", fds={3: "/d"})
    target, link = mem.put_str("../elsewhere"), mem.put_str("ln")
    assert f.decode_symlink(PID, args(target, link), mem) == FileWrite(
        pid=PID, op=FileOp.SYMLINK, path="/w/ln", target="../elsewhere", as_written="ln"
    )
    assert f.decode_symlinkat(PID, args(target, 3, link), mem).path == "/d/ln"


def test_memfd_create_names_the_anonymous_file() -> None:
    mem = FakeMemory()
    event = f.decode_memfd_create(PID, args(mem.put_str("payload"), 1), mem)
    assert event == FileWrite(pid=PID, op=FileOp.MEMFD, path="memfd:payload", flags=1)


# ---------------------------------------------------------------- canonical paths (class 6)

HOME_LINKS = {
    "/proc/42/root": "/",
    "/proc/42/task/42/root": "/",
    "/proc/42/cwd": "/work/project",
    "/proc/42/fd/3": "/home/ci/.ssh",
    "/proc/42/fd/1": "pipe:[77]",
    "/proc/7/cwd": "/srv/other",
    "/dev/fd": "/proc/self/fd",
    "/work/project/link": "/home/ci",
    "/home/ci/.config/shortcut": "../.ssh",
    "/work/project/rc": "/home/ci/.bashrc",
    "/loop/a": "/loop/b",
    "/loop/b": "/loop/a",
}


def _open(mem: FakeMemory, path: str, flags: int = O_WRONLY_CREAT_TRUNC) -> FileWrite:
    return f.decode_open(PID, args(mem.put_str(path), flags, 0o644), mem)


def test_every_alias_of_a_file_is_the_file_and_the_spelling_is_kept() -> None:
    mem = FakeMemory(cwd="/work/project", links=HOME_LINKS)
    for alias in (
        "/proc/self/root/home/ci/.bashrc",
        "/proc/thread-self/root/home/ci/.bashrc",
        "/proc/42/root/home/ci/.bashrc",
        "/proc/self/cwd/../../home/ci/.bashrc",
        "/proc/self/fd/3/../.bashrc",
        "/dev/fd/3/../.bashrc",
        "link/.bashrc",
        "./link/./.ssh/../.bashrc",
        "/home/ci/.config/shortcut/../.bashrc",
        "../../home/ci/.bashrc",
        "rc",  # a symlink followed by O_CREAT without O_EXCL
    ):
        event = _open(mem, alias)
        assert (event.path, event.as_written) == ("/home/ci/.bashrc", alias), alias
    assert _open(mem, "/home/ci/.bashrc").as_written is None


def test_dot_dot_after_a_symlinked_directory_goes_up_from_where_it_points() -> None:
    mem = FakeMemory(cwd="/", links=HOME_LINKS)
    # textually /work/project, really /home
    assert _open(mem, "/work/project/link/../x").path == "/home/x"


def test_the_last_component_is_followed_only_where_the_syscall_follows_it() -> None:
    mem = FakeMemory(cwd="/work/project", links=HOME_LINKS)
    assert _open(mem, "rc", 0o1 | 0o100 | 0o200).path == "/work/project/rc"  # O_EXCL: no follow
    assert _open(mem, "rc", 0o1 | 0o400000).path == "/work/project/rc"  # O_NOFOLLOW
    assert f.decode_unlink(PID, args(mem.put_str("rc")), mem).path == "/work/project/rc"
    assert f.decode_chmod(PID, args(mem.put_str("rc"), 0o755), mem).path == "/home/ci/.bashrc"
    renamed = f.decode_rename(PID, args(mem.put_str("tmp"), mem.put_str("/proc/self/cwd/link/.profile")), mem)
    assert renamed.target == "/home/ci/.profile"
    assert renamed.target_as_written == "/proc/self/cwd/link/.profile"


def test_dirfds_and_other_processes_proc_entries() -> None:
    mem = FakeMemory(cwd="/work/project", fds={9: "/home/ci"}, links=HOME_LINKS)
    event = f.decode_openat(PID, args(9, mem.put_str(".ssh/../.npmrc"), 0o1), mem)
    assert event.path == "/home/ci/.npmrc"
    assert _open(mem, "/proc/7/cwd/x").path == "/srv/other/x"
    assert _open(mem, "/proc/self/environ", 0).path == "/proc/42/environ"
    assert _open(mem, "/proc/self/fd/1", 0o1).path == "/proc/42/fd/1"  # a pipe: no path to follow


def test_a_symlink_loop_ends() -> None:
    mem = FakeMemory(cwd="/", links=HOME_LINKS)
    assert _open(mem, "/loop/a/x").path.startswith("/loop/")


def test_the_tracers_reader_resolves_in_the_tracees_view(tmp_path: Path) -> None:
    """The real reader over a live process: the kernel's fast path for ordinary paths, the
    walk for /proc (where the tracer's own /proc/self would answer for the wrong process,
    including through a symlink the tracee made to it)."""
    work, home = tmp_path / "work", tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    work.mkdir()
    (tmp_path / "self-cwd").symlink_to("/proc/self/cwd")
    (tmp_path / "to-home").symlink_to(home)
    (home / "rc").symlink_to(home / ".bashrc")
    child = subprocess.Popen(["sleep", "30"], cwd=work)
    try:
        mem = TraceeMemory(child.pid)
        assert mem.canonical(f"{tmp_path}/self-cwd/x", True) == f"{work}/x"
        assert mem.canonical("/proc/self/cwd/../home/.bashrc", True) == f"{home}/.bashrc"
        assert mem.canonical(f"/proc/{child.pid}/root{home}/.ssh/../.npmrc", True) == f"{home}/.npmrc"
        assert mem.canonical(f"{tmp_path}/to-home/.ssh/../.profile", True) == f"{home}/.profile"
        assert mem.canonical(f"{tmp_path}/to-home/rc", True) == f"{home}/.bashrc"
        assert mem.canonical(f"{tmp_path}/to-home/rc", False) == f"{home}/rc"
        assert mem.canonical("/proc/self/environ", False) == f"/proc/{child.pid}/environ"
        assert mem.canonical(f"{home}/new-file", True) == f"{home}/new-file"
    finally:
        child.kill()
        child.wait()
