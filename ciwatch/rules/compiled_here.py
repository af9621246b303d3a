"""Whether a file a hook ran is a program the build compiled here, from what was on disk.

Builds compile small programs and run them: meson's compiler sanity check
(``meson-private/sanity_check_for_c.exe``) and its ``compiler.run()`` tests, autoconf's
``conftest``, a code generator built and run as a build step. That is ordinary compiling, and
every C extension built from an sdist does it. What separates it from a dropper is where the
program's bytes came from, which the record answers in two parts:

- the toolchain made the file: every write a hook made to it before it ran came from a linker
  (``ld``, ``collect2``, gold, lld, mold), itself a binary no hook wrote. A file the hook wrote,
  copied or moved into place itself is not the toolchain's output;
- nothing a hook ran reached the network (any host, the registries included, DNS too) before the
  program ran: its sources can only be the package's own files, files on the machine, or code
  the hook generated, all of them as reviewed as the hook itself. A hook that fetched anything
  may be compiling what it fetched (a dropper shipped as source), so the run counts.

What stays possible: a hook that compiles a payload carried in its own sdist and runs it. That is
no more than the hook running its own code (its setup.py can do the same directly); what the
program then does (network, persistence, credentials) is judged by the other rules."""

from __future__ import annotations

import os
import re

from ciwatch.analysis.tree import ProcessNode
from ciwatch.rules.base import RuleContext

#: The toolchain programs that write a linked executable, by the binary the kernel ran; Debian's
#: are spelled with their target triple (``x86_64-linux-gnu-ld.bfd``).
_LINKER = re.compile(r"^(?:[A-Za-z0-9_]+-)*(?:ld(?:\.bfd|\.gold|\.lld|\.mold)?|gold|lld|mold|collect2)$")


def is_linker(node: ProcessNode, at_seq: int, context: RuleContext) -> bool:
    """The process was a linker when it wrote at ``at_seq`` (a process that wrote and then
    exec'd ``ld`` did not write as ``ld``), run from a binary no hook wrote (a hook's own ``ld``
    is the hook's code)."""
    running = [event for seq, event in node.execs if seq < at_seq]
    if not running:
        return False
    event = running[-1]
    binary = event.exe.removesuffix(" (deleted)") or event.path
    return bool(_LINKER.match(os.path.basename(binary))) and binary not in context.written_by_hooks


def linked_here(context: RuleContext, path: str, run_seq: int) -> str | None:
    """Why ``path``, run at ``run_seq``, is the build's own compiled program (the reason the
    verdict keeps), or None when its bytes may have come from elsewhere."""
    writes = [(seq, writer) for seq, writer in context.written_by_hooks.get(path, []) if seq < run_seq]
    if not writes or not all(is_linker(writer, seq, context) for seq, writer in writes):
        return None
    if _first_hook_contact(context, run_seq) is not None:
        return None
    linker = writes[-1][1]
    return (
        f"not counted: {path} was linked here by {linker.name} (the build compiling a program and "
        "running it, as meson's and configure's checks do) and no hook reached the network before it ran: "
        "its bytes are the package's own sources compiled, not bytes from the network"
    )


def _first_hook_contact(context: RuleContext, before_seq: int) -> str | None:
    """The first host any hook process contacted before ``before_seq``, if any did."""
    for contact in context.contacts:
        if contact.seq >= before_seq:
            break
        if contact.node is not None and contact.node.hook is not None:
            return contact.host
    return None
