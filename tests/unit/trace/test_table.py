"""The syscall table and the seccomp filters generated from it.

A tiny BPF interpreter runs the filters over every x86_64 syscall number (and foreign-ABI
ones) with arguments that do and don't meet each row's predicate: the filter must trace
exactly what the table says. The programs the hand-written builder made before the table
existed are kept below: the generated ones must behave the same (the base filter is even
byte for byte the same).
"""

from __future__ import annotations

import ast
import struct
from pathlib import Path

import pytest
from ptrace.syscall.linux import x86_64

from ciwatch.trace import Tracer
from ciwatch.trace.ptrace_api import AUDIT_ARCH_I386, AUDIT_ARCH_X86_64
from ciwatch.trace.seccomp import (
    SECCOMP_RET_ALLOW,
    SECCOMP_RET_ERRNO,
    SECCOMP_RET_TRACE,
    build_filter,
    build_hook_filter,
)
from ciwatch.trace.table import (
    AF_NETLINK,
    AF_PACKET,
    BY_NUMBER,
    CLONE_NEWNET,
    CLONE_UNTRACED,
    PR_SET_SECCOMP,
    SOCK_PACKET,
    SOCK_RAW,
    TABLE,
    WRITE_OPEN_FLAGS,
    X32_SYSCALL_BIT,
    Action,
    When,
)

ENOSYS = SECCOMP_RET_ERRNO | 38

# fmt: off
_BEFORE_BASE = "2000000004000000150000263e0000c020000000000000003500240000000040150023003b0000001500220042010000150021002a000000150020002e00000015001f003301000015001e005500000015001d00b501000015001c005200000015001b000801000015001a003c010000150019005600000015001800090100001500170058000000150016000a010000150015005a000000150014005b000000150013000c01000015001200c40100001500110057000000150010000701000015000f003f01000015000e00a901000015000d006500000015000300020000001500040001010000150005002c000000060000000000ff7f20000000180000004500070643020000200000002000000045000504430200002000000030000000150000030000000020000000340000001500000100000000060000000000ff7f060000000000f07f"  # noqa: E501
_BEFORE_RECEIVES = "2000000004000000150000283e0000c020000000000000003500260000000040150025003b0000001500240042010000150023002a000000150022002e0000001500210033010000150020005500000015001f00b501000015001e005200000015001d000801000015001c003c01000015001b005600000015001a00090100001500190058000000150018000a010000150017005a000000150016005b000000150015000c01000015001400c401000015001300570000001500120007010000150011003f01000015001000a901000015000f006500000015000500020000001500060001010000150007002c00000015000b002f000000150005002d000000060000000000ff7f20000000180000004500070643020000200000002000000045000504430200002000000030000000150000030000000020000000340000001500000100000000060000000000ff7f060000000000f07f"  # noqa: E501
_BEFORE_HOOK = "2000000004000000150000053e0000c020000000000000001500040002000000150003000101000015000200b50100001500010036010000060000000000ff7f060000000000f07f"  # noqa: E501
# fmt: on


def run_bpf(program: bytes, arch: int, number: int, args: tuple[int, ...]) -> int:
    """Run a classic-BPF seccomp program over struct seccomp_data (the subset it uses)."""
    data = struct.pack("<iIQ6Q", number, arch, 0, *args)
    code = [struct.unpack_from("<HBBI", program, offset) for offset in range(0, len(program), 8)]
    accumulator, pc = 0, 0
    while True:
        op, jt, jf, k = code[pc]
        pc += 1
        if op == 0x20:  # BPF_LD | BPF_W | BPF_ABS
            accumulator = struct.unpack_from("<I", data, k)[0]
        elif op == 0x06:  # BPF_RET | BPF_K
            return k
        elif op == 0x54:  # BPF_ALU | BPF_AND | BPF_K
            accumulator &= k
        elif op in (0x15, 0x35, 0x45):  # JEQ, JGE, JSET with K
            taken = {0x15: accumulator == k, 0x35: accumulator >= k, 0x45: bool(accumulator & k)}[op]
            pc += jt if taken else jf
        else:
            raise AssertionError(f"unexpected BPF op {op:#x}")


#: Arguments that meet, or fail, each predicate: write flags or not, a pointer or NULL
#: (in the high or the low half), in every argument the table tests.
_ARGUMENTS = (
    [(0,) * 6]
    + [
        tuple(value if index == arg else 0 for index in range(6))
        for arg in range(6)
        for value in (1, WRITE_OPEN_FLAGS, 0o100, 0o4000, 0x7FFF_0000_0000, 0x1000, 0xFFFF_FFFF_0000_0000)
    ]
    + [
        # socket(): ordinary families and types, raw and packet ones (with SOCK_NONBLOCK/CLOEXEC)
        (2, 1, 0, 0, 0, 0),
        (2, 2 | 0o4000, 0, 0, 0, 0),
        (16, 3 | 0o2000000, 0, 0, 0, 0),
        (2, SOCK_RAW | 0o4000, 1, 0, 0, 0),
        (AF_PACKET, 2, 0, 0, 0, 0),
        (2, SOCK_PACKET, 0, 0, 0, 0),
        (10, SOCK_RAW, 58, 0, 0, 0),
        # clone(), unshare(): thread flags, CLONE_UNTRACED, CLONE_NEWNET; prctl() options
        (0x3D0F00, 0, 0, 0, 0, 0),
        (0x3D0F00 | CLONE_UNTRACED, 0, 0, 0, 0, 0),
        (CLONE_NEWNET | 0x10000000, 0, 0, 0, 0, 0),
        (PR_SET_SECCOMP, 2, 0, 0, 0, 0),
        (PR_SET_SECCOMP | 0x1_0000_0000, 2, 0, 0, 0, 0),
        (15, 0, 0, 0, 0, 0),
    ]
)
_NUMBERS = range(0, 480)


def expected(number: int, args: tuple[int, ...], *, receives: bool) -> int:
    """What the table says about a syscall: handed to the tracer, allowed, or failed."""
    row = BY_NUMBER.get(number)
    if row is None or (row.receives_only and not receives):
        return SECCOMP_RET_ALLOW
    low = args[row.arg] & 0xFFFFFFFF if row.arg >= 0 else 0
    traced = {
        When.WRITE_FLAGS: bool(low & WRITE_OPEN_FLAGS),
        When.HAS_ADDRESS: args[row.arg] != 0,
        When.ANY_BIT: bool(low & row.value),
        When.EQUALS: low == row.value,
        When.RAW_SOCKET: args[0] & 0xFFFFFFFF == AF_PACKET
        or (args[0] & 0xFFFFFFFF != AF_NETLINK and args[1] & 0xF in (SOCK_RAW, SOCK_PACKET)),
    }.get(row.when, True)
    if row.when is When.ENOSYS:
        return ENOSYS
    return SECCOMP_RET_TRACE if traced else SECCOMP_RET_ALLOW


@pytest.mark.parametrize("receives", [False, True])
def test_the_filter_traces_exactly_what_the_table_says(receives: bool) -> None:
    program = build_filter(trace_receives=receives)
    for number in _NUMBERS:
        for args in _ARGUMENTS:
            verdict = run_bpf(program, AUDIT_ARCH_X86_64, number, args)
            assert verdict == expected(number, args, receives=receives), (number, args)


def test_the_filter_hands_over_every_foreign_abi_syscall() -> None:
    program = build_filter()
    for number in (0, 1, 2, 11, 257):
        assert run_bpf(program, AUDIT_ARCH_I386, number, (0,) * 6) == SECCOMP_RET_TRACE
        assert run_bpf(program, AUDIT_ARCH_X86_64, number | X32_SYSCALL_BIT, (0,) * 6) == SECCOMP_RET_TRACE


def test_the_hook_filter_traces_the_hook_rows_whatever_their_arguments() -> None:
    program = build_hook_filter()
    hook = {row.number for row in TABLE if row.hook}
    assert hook == {2, 257, 437}  # open, openat, openat2 (process_vm_readv stops everywhere)
    for number in _NUMBERS:
        for args in _ARGUMENTS[:8]:
            want = SECCOMP_RET_TRACE if number in hook else SECCOMP_RET_ALLOW
            assert run_bpf(program, AUDIT_ARCH_X86_64, number, args) == want
    assert run_bpf(program, AUDIT_ARCH_I386, 5, (0,) * 6) == SECCOMP_RET_ALLOW  # the base filter's job


def test_the_generated_filters_are_the_ones_written_by_hand_before() -> None:
    """On every syscall the hand-written filters knew (the evasion rows came after them)."""
    newer = {row.number for row in TABLE if row.action in (Action.ESCAPE, Action.SIGNAL, Action.PTRACE, Action.REACH)}
    newer |= {76}  # truncate: record-tamper
    # process_vm_readv moved from the hook filter to the base filter (it can reach ciwatch).
    reach = {row.number for row in TABLE if row.action is Action.REACH}
    for receives, hand in ((False, _BEFORE_BASE), (True, _BEFORE_RECEIVES)):
        old, new = bytes.fromhex(hand), build_filter(trace_receives=receives)
        for number in set(_NUMBERS) - newer:
            for args in _ARGUMENTS:
                assert run_bpf(new, AUDIT_ARCH_X86_64, number, args) == run_bpf(old, AUDIT_ARCH_X86_64, number, args)
    before, now = bytes.fromhex(_BEFORE_HOOK), build_hook_filter()  # the same tests, in another order
    for arch in (AUDIT_ARCH_X86_64, AUDIT_ARCH_I386):
        for number in set(_NUMBERS) - reach:
            args = (1, 2, 3, 4, 5, 6)
            assert run_bpf(now, arch, number, args) == run_bpf(before, arch, number, args)


def test_rows_are_named_as_the_kernel_names_them() -> None:
    for row in TABLE:
        known = x86_64.SYSCALL_NAMES.get(row.number)
        assert known in (None, row.name), row
    assert len({row.name for row in TABLE}) == len(TABLE)


def test_predicates_name_an_argument_when_they_test_one() -> None:
    for row in TABLE:
        assert (row.arg >= 0) == (row.when in (When.WRITE_FLAGS, When.HAS_ADDRESS, When.ANY_BIT, When.EQUALS)), row


def test_the_tracer_dispatches_every_row_by_its_number() -> None:
    tracer = Tracer(lambda event: None)
    assert set(tracer._entries) == set(BY_NUMBER)
    for row in TABLE:
        decode, _handle = tracer._entries[row.number]
        assert decode is row.decode
    assert set(tracer._hook_entries) == {row.number for row in TABLE if row.hook}
    assert {row.action for row in TABLE} == set(Action)


def test_decoders_are_pure() -> None:
    """They import neither ptrace nor the tracer's ptrace-backed modules."""
    decode = Path(__file__).resolve().parents[3] / "ciwatch" / "trace" / "decode"
    for source in decode.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert not name.startswith("ptrace"), (source.name, name)
                assert not name.startswith("ciwatch.trace") or name.startswith("ciwatch.trace.decode"), (
                    source.name,
                    name,
                )
