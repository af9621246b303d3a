"""The file decoders, over a fake tracee: paths resolved against cwd and dirfd as the
kernel would, flags and modes masked as the record keeps them."""

from __future__ import annotations

from ciwatch.record.events import FileOp, FileWrite
from ciwatch.trace.decode import AT_FDCWD
from ciwatch.trace.decode import files as f
from tests.unit.trace.fake import FakeMemory, args

O_WRONLY_CREAT_TRUNC = 0o1 | 0o100 | 0o1000
PID = 42


def test_open_resolves_against_the_cwd_and_keeps_the_flags() -> None:
    mem = FakeMemory(cwd="/work/project")
    event = f.decode_open(PID, args(mem.put_str("build/../out.txt"), O_WRONLY_CREAT_TRUNC, 0o644), mem)
    assert event == FileWrite(pid=PID, op=FileOp.OPEN, path="/work/project/out.txt", flags=O_WRONLY_CREAT_TRUNC)


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
        pid=PID, op=FileOp.UNLINK, path="/srv/dir", flags=0x200
    )


def test_undecodable_bytes_survive_as_surrogates() -> None:
    mem = FakeMemory(cwd="/w")
    event = f.decode_unlink(PID, args(mem.put(b"caf\xe9\0")), mem)
    assert event.path == "/w/caf\udce9"


def test_creat_chmod_and_fchmod_keep_the_mode_bits_only() -> None:
    mem = FakeMemory(cwd="/w", fds={5: "/w/tool"})
    assert f.decode_creat(PID, args(mem.put_str("c"), 0o100755), mem).flags == 0o755
    assert f.decode_chmod(PID, args(mem.put_str("c"), 0o104755), mem) == FileWrite(
        pid=PID, op=FileOp.CHMOD, path="/w/c", flags=0o4755
    )
    assert f.decode_fchmod(PID, args(5, 0o755), mem) == FileWrite(pid=PID, op=FileOp.CHMOD, path="/w/tool", flags=0o755)
    assert f.decode_fchmodat(PID, args(5, mem.put_str("sub"), 0o700, 0), mem).path == "/w/tool/sub"


def test_rename_and_link_record_both_ends() -> None:
    mem = FakeMemory(cwd="/w", fds={3: "/a", 4: "/b"})
    old, new = mem.put_str("x"), mem.put_str("y")
    assert f.decode_rename(PID, args(old, new), mem) == FileWrite(pid=PID, op=FileOp.RENAME, path="/w/x", target="/w/y")
    assert f.decode_renameat(PID, args(3, old, 4, new, 1), mem) == FileWrite(
        pid=PID, op=FileOp.RENAME, path="/a/x", target="/b/y"
    )
    assert f.decode_link(PID, args(old, new), mem).op is FileOp.LINK
    assert f.decode_linkat(PID, args(3, old, 4, new, 0), mem) == FileWrite(
        pid=PID, op=FileOp.LINK, path="/a/x", target="/b/y"
    )


def test_symlink_keeps_its_target_as_text() -> None:
    mem = FakeMemory(cwd="/w", fds={3: "/d"})
    target, link = mem.put_str("../elsewhere"), mem.put_str("ln")
    assert f.decode_symlink(PID, args(target, link), mem) == FileWrite(
        pid=PID, op=FileOp.SYMLINK, path="/w/ln", target="../elsewhere"
    )
    assert f.decode_symlinkat(PID, args(target, 3, link), mem).path == "/d/ln"


def test_memfd_create_names_the_anonymous_file() -> None:
    mem = FakeMemory()
    event = f.decode_memfd_create(PID, args(mem.put_str("payload"), 1), mem)
    assert event == FileWrite(pid=PID, op=FileOp.MEMFD, path="memfd:payload", flags=1)
