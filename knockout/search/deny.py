"""Deny rules: code a search never cuts, because the cut would deadlock or crash, not answer.

A climb or a bisect probes many points, most of them chosen by knockout
itself.  Some code must never be among them: in the kernel the scheduler,
locking and RCU primitives, entry and interrupt code, printk, ``noinstr``
text, the kprobe blacklist, the text-patching machinery and knockout's own
module; in a process the start-up and dynamic-linker code.  A refused point
is reported as refused, with the rule that refused it.

Rules are built in and can be extended from a file (``--deny FILE``): one
rule per line, ``REGEX  reason...``, ``#`` starts a comment.  A regex
matches the symbol's name (``re.search``); ``module:NAME`` matches a kernel
module's symbols.

>>> rules = DenyRules.builtin("kernel")
>>> rules.refusal("_raw_spin_lock")
'refused: _raw_spin_lock is a locking primitive (cutting it deadlocks or corrupts)'
>>> rules.refusal("shrink_slab") is None
True
>>> rules.refusal("ko_cut", module="knockout")
"refused: ko_cut is knockout's own module"
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from knockout.errors import BadInput, NotFound

__all__ = ["DenyRule", "DenyRules", "Kind", "text_ranges"]

Kind = Literal["kernel", "process"]

_KERNEL: tuple[tuple[str, str], ...] = (
    (
        r"^(__)?(schedule|sched_|scheduler_|try_to_wake_up|wake_up|finish_task_switch|"
        r"pick_next_task|enqueue_task|dequeue_task|update_curr|preempt_|context_switch|"
        r"__switch_to)",
        "is the scheduler (cutting it hangs the machine)",
    ),
    (
        r"(spin_lock|spin_unlock|spin_trylock|_raw_|^queued_|osq_|^mutex_|^__mutex|rwsem|"
        r"^down_|^up_|^up$|^down$|rt_mutex|seqcount|^lock_|^__lock|^unlock_|percpu_ref|"
        r"^atomic_|^refcount_)",
        "is a locking primitive (cutting it deadlocks or corrupts)",
    ),
    (r"(^rcu_|^__rcu_|^call_rcu|^synchronize_rcu|srcu|^kfree_rcu)", "is RCU"),
    (
        r"^(entry_|asm_|do_syscall_|syscall_|irqentry_|exc_|__sysvec|sysvec_|common_interrupt|"
        r"handle_irq|__handle_irq|irq_|__irq|do_IRQ|ret_from_|el[01]|do_el[01]|__do_softirq|"
        r"do_softirq|__softirq)",
        "is entry or interrupt code",
    ),
    (r"(printk|^console_|^vprintk|^_printk|^log_store|^devkmsg)", "is printk"),
    (
        r"^(ftrace_|__fentry__|mcount|kprobe_|__kprobe|opt_pre_handler|optimized_callback|"
        r"text_poke|smp_text_poke|aarch64_insn_patch|__apply_alternatives|apply_alternatives|"
        r"stop_machine|multi_cpu_stop|jump_label|static_key|__static_call|arch_jump_label)",
        "is the kernel's own text-patching or tracing machinery",
    ),
    (
        r"^(memcpy|memset|memmove|__memcpy|__memset|__memmove|copy_user|__copy_user|"
        r"clear_page|copy_page|__x86_indirect|__x86_return_thunk|srso_|retbleed_|"
        r"native_|__native_|xen_|paravirt_)",
        "is a primitive every path depends on (cutting it corrupts memory or hangs)",
    ),
    (r"^(panic|die|oops_|__die|bug_handler|report_bug|__warn|warn_)", "reports a crash"),
    (
        r"^mem_cgroup_iter$",
        "is an iterator whose callers dereference its first result (returning NULL oopses "
        "in shrink_node's do-while: seen as a NULL dereference in "
        "mem_cgroup_calculate_protection); cut the loop that calls it instead",
    ),
)
_PROCESS: tuple[tuple[str, str], ...] = (
    (
        r"^(_start|__libc_start|_dl_|_init$|_fini$|__restore_rt$|__libc_csu)",
        "is start-up or dynamic-linker code",
    ),
)
#: kernel text ranges (kallsyms start/end symbols) that no cut may touch
KERNEL_RANGES: tuple[tuple[str, str, str], ...] = (
    ("__noinstr_text_start", "__noinstr_text_end", "noinstr text"),
    ("__entry_text_start", "__entry_text_end", "entry text"),
    ("__irqentry_text_start", "__irqentry_text_end", "irq entry text"),
    ("__softirqentry_text_start", "__softirqentry_text_end", "softirq entry text"),
    ("__kprobes_text_start", "__kprobes_text_end", "kprobes text"),
)
#: the kprobe blacklist the kernel publishes (debugfs)
BLACKLIST = Path("/sys/kernel/debug/kprobes/blacklist")


@dataclass(frozen=True)
class DenyRule:
    """One rule: a pattern on symbol names (or a module) and why it refuses."""

    pattern: re.Pattern[str]
    reason: str
    module: str | None = None

    def refuses(self, name: str, module: str | None) -> bool:
        if self.module is not None:
            return module == self.module
        return bool(self.pattern.search(name))


@dataclass(frozen=True)
class _Range:
    start: int
    end: int
    reason: str


class DenyRules:
    """The rules of one search: built-in, extended from files and by the kernel's own lists."""

    def __init__(self, rules: Iterable[DenyRule], ranges: Sequence[_Range] = ()) -> None:
        self.rules = tuple(rules)
        self.ranges = tuple(ranges)

    @classmethod
    def builtin(cls, kind: Kind) -> DenyRules:
        """The built-in rules for ``kind`` (the kernel's include its own module)."""
        table = _KERNEL if kind == "kernel" else _PROCESS
        rules = [DenyRule(re.compile(p), why) for p, why in table]
        if kind == "kernel":
            rules.append(DenyRule(re.compile(""), "is knockout's own module", module="knockout"))
        return cls(rules)

    def with_file(self, path: str | Path) -> DenyRules:
        """These rules plus the ones in ``path`` (``REGEX reason`` per line)."""
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            raise NotFound(f"--deny {path}: no such file; check the path") from None
        added = []
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            pattern, _, reason = line.partition(" ")
            reason = reason.strip() or f"is denied by {path}:{number}"
            module = pattern.removeprefix("module:") if pattern.startswith("module:") else None
            try:
                compiled = re.compile("" if module else pattern)
            except re.error as exc:
                raise BadInput(
                    f"{path}:{number}: {pattern!r} is not a regex ({exc}); fix it"
                ) from None
            added.append(DenyRule(compiled, reason, module))
        return DenyRules([*self.rules, *added], self.ranges)

    def with_ranges(self, ranges: Iterable[tuple[int, int, str]]) -> DenyRules:
        """These rules plus address ranges (e.g. :func:`text_ranges`) no cut may touch."""
        more = [_Range(start, end, why) for start, end, why in ranges]
        return DenyRules(self.rules, [*self.ranges, *more])

    def refusal(
        self, name: str, address: int | None = None, module: str | None = None
    ) -> str | None:
        """Why ``name`` (at ``address``, in ``module``) may not be cut, or None."""
        for rule in self.rules:
            if rule.refuses(name, module):
                return f"refused: {name} {rule.reason}"
        if address is not None:
            for r in self.ranges:
                if r.start <= address < r.end:
                    return f"refused: {name} is in the kernel's {r.reason}"
        return None

    def predicate(self) -> Callable[[str, int], str | None]:
        """``refuse(symbol, address)`` for :func:`knockout.search.candidates` and the climb."""
        return lambda name, address: self.refusal(name, address)


def text_ranges(
    kernel_symbol: Callable[[str], int | None], blacklist: Path = BLACKLIST
) -> list[tuple[int, int, str]]:
    """The kernel's no-cut text ranges (noinstr, entry, kprobes...) and its kprobe blacklist.

    ``kernel_symbol`` resolves a kallsyms name (any type) to an address.
    The blacklist (debugfs) is read when mounted; without it the ranges and
    the name rules still hold.
    """
    out = []
    for start_name, end_name, why in KERNEL_RANGES:
        start, end = kernel_symbol(start_name), kernel_symbol(end_name)
        if start is not None and end is not None and start < end:
            out.append((start, end, why))
    try:
        lines = blacklist.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and "-" in fields[0]:
            low, _, high = fields[0].partition("-")
            try:
                out.append((int(low, 16), int(high, 16), f"kprobe blacklist ({fields[1]})"))
            except ValueError:
                continue
    return out
