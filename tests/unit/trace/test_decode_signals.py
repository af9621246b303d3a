"""The signal and ptrace decoders: who a syscall aims at, as the caller named it."""

from __future__ import annotations

import signal

from ciwatch.trace.decode import signals as s
from ciwatch.trace.decode.signals import Aim, Aimed
from tests.unit.trace.fake import FakeMemory, args

PID = 42
STOP = int(signal.SIGSTOP)


def test_kill_names_a_process_its_own_group_a_group_or_everyone() -> None:
    mem = FakeMemory()
    assert s.decode_kill(PID, args(77, STOP), mem) == Aimed("kill", Aim.PROCESS, 77, STOP)
    assert s.decode_kill(PID, args(0, STOP), mem) == Aimed("kill", Aim.CALLER_GROUP, 0, STOP)
    assert s.decode_kill(PID, args(-1, STOP), mem) == Aimed("kill", Aim.EVERYONE, -1, STOP)
    assert s.decode_kill(PID, args(-300, STOP), mem) == Aimed("kill", Aim.GROUP, 300, STOP)
    # The kernel reads pid_t (32 bits): a 64-bit register holding 0xffffffff is -1.
    assert s.decode_kill(PID, args(0xFFFFFFFF, STOP), mem).aim is Aim.EVERYONE


def test_thread_signals_name_the_thread() -> None:
    mem = FakeMemory()
    assert s.decode_tkill(PID, args(91, STOP), mem) == Aimed("tkill", Aim.THREAD, 91, STOP)
    assert s.decode_tgkill(PID, args(90, 91, STOP), mem) == Aimed("tgkill", Aim.THREAD, 91, STOP)
    assert s.decode_rt_tgsigqueueinfo(PID, args(90, 91, STOP, 0), mem).target == 91
    assert s.decode_rt_sigqueueinfo(PID, args(90, STOP, 0), mem) == Aimed("rt_sigqueueinfo", Aim.PROCESS, 90, STOP)


def test_pidfd_send_signal_names_a_descriptor() -> None:
    assert s.decode_pidfd_send_signal(PID, args(5, STOP, 0, 0), FakeMemory()) == Aimed(
        "pidfd_send_signal", Aim.PIDFD, 5, STOP
    )


def test_ptrace_names_its_target_unless_traceme() -> None:
    mem = FakeMemory()
    attach = s.decode_ptrace_call(PID, args(s.PTRACE_ATTACH, 77), mem)
    assert attach.aimed is not None and attach.aimed.target == 77
    assert attach.becomes_tracer
    traceme = s.decode_ptrace_call(PID, args(s.PTRACE_TRACEME, 0), mem)
    assert traceme.aimed is None and traceme.becomes_tracer
    peek = s.decode_ptrace_call(PID, args(2, 77), mem)  # PTRACE_PEEKDATA: acts on 77, traces nothing
    assert peek.aimed is not None and not peek.becomes_tracer
    assert peek.anomaly.detail == "ptrace(request=2, pid=77)"
