"""The process and anomaly decoders, over a fake tracee."""

from __future__ import annotations

from ciwatch.record.events import Anomaly, FileRead
from ciwatch.record.vocabulary import AnomalyKind, ReadHow
from ciwatch.trace.decode import AT_EMPTY_PATH, AT_FDCWD
from ciwatch.trace.decode import processes as p
from ciwatch.trace.decode import signals as sig
from tests.unit.trace.fake import FakeMemory, args

PID = 42


def test_execve_gives_the_path_as_named() -> None:
    mem = FakeMemory(cwd="/w")
    assert p.decode_execve(PID, args(mem.put_str("./bin/tool"), 0, 0), mem) == "/w/bin/tool"


def test_execveat_resolves_against_its_dirfd_or_is_fexecve() -> None:
    mem = FakeMemory(cwd="/w", fds={4: "/opt", 9: "/memfd:x (deleted)"})
    assert p.decode_execveat(PID, args(4, mem.put_str("run"), 0, 0, 0), mem) == "/opt/run"
    assert p.decode_execveat(PID, args(AT_FDCWD, mem.put_str("run"), 0, 0, 0), mem) == "/w/run"
    empty = mem.put_str("")
    assert p.decode_execveat(PID, args(9, empty, 0, 0, AT_EMPTY_PATH), mem) == "/memfd:x (deleted)"


def test_process_vm_readv_of_another_process_is_a_read_of_its_memory() -> None:
    mem = FakeMemory()
    assert p.decode_process_vm_readv(PID, args(77, 0, 1, 0, 1, 0), mem) == FileRead(
        pid=PID, path="/proc/77/mem", how=ReadHow.PROCESS_VM_READV
    )
    assert p.decode_process_vm_readv(PID, args(PID, 0, 1, 0, 1, 0), mem) is None


def test_the_calls_that_reach_into_another_process_name_their_targets() -> None:
    mem = FakeMemory()
    readv = sig.decode_process_vm_readv(PID, args(77, 0, 1, 0, 1, 0), mem)
    assert readv.targets == (sig.Aimed("process_vm_readv", sig.Aim.THREAD, 77, sig.REACH),)
    assert readv.read == FileRead(pid=PID, path="/proc/77/mem", how=ReadHow.PROCESS_VM_READV)
    writev = sig.decode_process_vm_writev(PID, args(78, 0, 1, 0, 1, 0), mem)
    assert writev.targets == (sig.Aimed("process_vm_writev", sig.Aim.THREAD, 78, sig.REACH),) and writev.read is None
    assert sig.decode_pidfd_getfd(PID, args(5, 3, 0), mem).targets[0].aim is sig.Aim.PIDFD
    assert sig.decode_process_madvise(PID, args(6, 0, 1, 0, 0), mem).targets[0].target == 6
    kcmp = sig.decode_kcmp(PID, args(PID, 99, 0, 1, 1), mem)
    assert [t.target for t in kcmp.targets] == [PID, 99]
    assert kcmp.targets[1].detail == "kcmp(thread 99)"


def test_ptrace_and_io_uring_are_anomalies() -> None:
    mem = FakeMemory()
    assert p.decode_ptrace(PID, args(16, -1), mem) == Anomaly(
        pid=PID, anomaly=AnomalyKind.PTRACE, detail="ptrace(request=16, pid=-1)"
    )
    anomaly = p.decode_io_uring_setup(PID, args(8, 0), mem)
    assert anomaly.anomaly is AnomalyKind.IO_URING
    assert "bypasses syscall tracing" in anomaly.detail
