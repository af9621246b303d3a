"""exec-written-file: a process runs a file that a hook wrote earlier in the same run: the
write-then-run chain of AN0022 (including code written to a memfd and run from memory)."""

from __future__ import annotations

from collections.abc import Iterator

from ciwatch.policy.model import Severity
from ciwatch.record.events import Anomaly, AnomalyKind
from ciwatch.rules.base import Finding, RuleContext, RuleInfo

INFO = RuleInfo(
    id="exec-written-file",
    summary="A file written by an install hook was executed in the same run",
    default_severity=Severity.HIGH,
    hint="Code that a hook fetched or generated and then ran was never reviewed; find where it came from "
    "(the write's lineage) before excepting the package.",
)


class ExecWrittenFile:
    info = INFO

    def check(self, context: RuleContext) -> Iterator[Finding]:
        for node in context.tree.nodes:
            for seq, event in node.execs:
                writes = context.written_by_hooks.get(event.path)
                earlier = [(w_seq, writer) for w_seq, writer in (writes or []) if w_seq < seq]
                if not earlier:
                    continue
                w_seq, writer = earlier[-1]
                assert writer.hook is not None
                message = f"{event.path}, written by {writer.hook.label}, was executed"
                finding = context.finding(INFO, message, writer, [w_seq, seq])
                yield finding
        for item in context.record.events:
            anomaly = item.event
            if isinstance(anomaly, Anomaly) and anomaly.anomaly is AnomalyKind.MEMFD_EXEC:
                runner = context.tree.node_at(item.seq)
                yield context.finding(INFO, f"code was run from memory ({anomaly.detail})", runner, [item.seq])
