"""The annotated disassembly of the decisive function, written when the report is made live.

It needs the code's bytes, so it is made where they can be read (a
:class:`~knockout.listing.Disassembler` over the ELF file, the process or the
kernel) and saved into the report's JSON as a plain record; a report
re-rendered from saved JSON shows that record and reads no bytes.

The listing is ``knockout disasm --source``'s (:func:`~knockout.listing.render_text`):
source lines interleaved, each instruction ``address <symbol+off>: bytes text``.
To it are added: ``=>`` on the instructions a cut rewrote, and after each call
and each hot instruction its share of the arms' busy samples -- for a call,
the samples whose stack went through that call site (from the profiles'
call edges and return addresses), for any instruction, the samples taken on
it (the sampled instruction pointers).

>>> from knockout.symbols import Symbol, SymbolTable
>>> from knockout.listing import Disassembler
>>> code = bytes.fromhex("e8fb0f0000" "31c0" "c3")  # call 0x2000; xor eax, eax; ret
>>> d = Disassembler(SymbolTable([Symbol("f", 0x1000, 8), Symbol("g", 0x2000, 1)]),
...                  lambda a, n: code[a - 0x1000:][:n], "x86_64")
>>> trial = {"profiles": {"baseline": {"busy": 10, "calls": [{"caller": "f", "callee": "g",
...     "return_ip": 0x1005, "dso": "[kernel.kallsyms]", "samples": 9}],
...     "ips": [["[kernel.kallsyms]", 0x1005, 1]]}, "cut": None},
...     "cuts": [{"location": "f+0x5", "old": "31c0", "new": "9090", "intent": "--skip"}]}
>>> record = annotate_function(d, "f", trial)
>>> for line in record["listing"]:
...     print(line.expandtabs(4))
   0x0000000000001000 <f>:  e8 fb 0f 00 00  call 0x2000 <g>   ; calls 90.0%
=> 0x0000000000001005 <f+0x5>:  31 c0           xor eax, eax   ; cut --skip   ; self 10.0%
   0x0000000000001007 <f+0x7>:  c3              ret
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

from knockout.errors import NotFound
from knockout.listing import DisasmLine, Disassembler, decode_all, render_text
from knockout.symbols import SymbolTable

__all__ = ["HOT", "annotate_function", "decisive_function"]

#: an instruction with at least this share of an arm's busy samples is hot
HOT = 0.01
ARMS = ("baseline", "cut")


def decisive_function(doc: dict[str, Any]) -> tuple[str, dict[str, Any] | None] | None:
    """The function the report annotates and the trial whose cut and profile it shows.

    A trial: the function of its first cut.  A climb: the culprit frame's cut, else the
    frame whose cut explained most.  A bisect: its function, with the probe that explained
    most.  None when there is nothing to annotate.

    >>> decisive_function({"verdict": "gone", "windows": [], "cuts": [{"location": "f+0x5"}]})
    ('f', {'verdict': 'gone', 'windows': [], 'cuts': [{'location': 'f+0x5'}]})
    """
    kind = doc.get("kind")
    if kind is None:
        cuts = doc.get("cuts") or []
        return (_function_of(cuts[0]["location"]), doc) if cuts else None
    if kind == "bisect":
        probes = [p for p in doc.get("probes") or [] if isinstance(p.get("trial"), dict)]
        best = max(probes, key=lambda p: p.get("explained") or -1.0, default=None)
        name = doc.get("function") or (doc.get("region") or {}).get("symbol")
        return (str(name), best["trial"] if best else None) if name else None
    frames = [f for f in doc.get("frames") or [] if f.get("cut")]
    culprit = [f for f in frames if f.get("symbol") == doc.get("culprit")]
    chosen = (
        culprit[0]
        if culprit
        else max(frames, key=lambda f: f.get("explained") or -1.0, default=None)
    )
    if chosen is None:
        return None
    return _function_of(chosen["cut"]["location"]), chosen.get("trial")


def _function_of(location: str) -> str:
    """``shrink_slab+0x150`` -> ``shrink_slab``."""
    return location.split("+", 1)[0]


def _runtime(table: SymbolTable, dso: str, ip: int) -> int | None:
    """A profile's ip (kernel: as is; user: in its file) as an address of ``table``."""
    if dso.startswith("["):
        return ip
    for image in table.images:
        if image.path == dso or os.path.basename(image.path) == os.path.basename(dso):
            return ip + image.bias
    return None if table.images else ip


def _counts(table: SymbolTable, trial: dict[str, Any] | None, function: str) -> dict[str, Any]:
    """Per arm: busy samples, samples by sampled address, by call-site return address."""
    out: dict[str, Any] = {}
    for arm in ARMS:
        profile = ((trial or {}).get("profiles") or {}).get(arm) or {}
        leaf: Counter[int] = Counter()
        for dso, ip, n in profile.get("ips") or []:
            address = _runtime(table, str(dso), int(ip))
            if address is not None:
                leaf[address] += int(n)
        calls: Counter[int] = Counter()
        for edge in profile.get("calls") or []:
            if edge.get("caller") != function:
                continue
            address = _runtime(table, str(edge["dso"]), int(edge["return_ip"]))
            if address is not None:
                calls[address] += int(edge["samples"])
        out[arm] = {"busy": int(profile.get("busy") or 0), "leaf": leaf, "calls": calls}
    return out


def _cut_ranges(
    table: SymbolTable, cuts: Sequence[dict[str, Any]]
) -> list[tuple[int, int, dict[str, Any]]]:
    out = []
    for c in cuts:
        try:
            start = table.resolve(str(c["location"])).address
        except (NotFound, ValueError):
            continue
        out.append((start, start + len(bytes.fromhex(str(c.get("old", "")))), c))
    return out


def _share(
    counts: dict[str, Any], arm: str, key: str, address: int | Sequence[int]
) -> float | None:
    busy = counts[arm]["busy"]
    if not busy:
        return None
    where = [address] if isinstance(address, int) else address
    return float(sum(counts[arm][key][a] for a in where)) / float(busy)


def _annotation(
    line: DisasmLine,
    counts: dict[str, Any],
    cut: dict[str, Any] | None,
    is_call: bool,
) -> tuple[str, dict[str, Any] | None]:
    """The comment after an instruction and its record, when it is cut, a call or hot."""
    insn = line.insn
    notes: list[str] = []
    record: dict[str, Any] = {"address": f"{insn.address:#x}", "where": line.where}
    record["text"] = line.text
    roles: list[str] = []
    if cut is not None:
        roles.append("cut")
        notes.append(f"cut {cut.get('intent', '')}".rstrip())
    # a return address is the call's end (some unwinders report it one byte before)
    ends = [insn.end, insn.end - 1] if is_call else []
    call = {arm: _share(counts, arm, "calls", ends) for arm in ARMS} if is_call else {}
    leaf = {arm: _share(counts, arm, "leaf", insn.address) for arm in ARMS}
    if is_call:
        roles.append("call")
        notes.append("calls " + _pair(call))
    if any((v or 0) >= HOT for v in leaf.values()):
        roles.append("hot")
        notes.append("self " + _pair(leaf))
    if not roles:
        return "", None
    record.update(roles=roles, calls=call or None, self=leaf)
    return "".join(f"   ; {n}" for n in notes), record


def _pair(shares: dict[str, float | None]) -> str:
    """``91.2%`` (baseline only) or ``91.2% -> 0.0%`` (baseline -> cut)."""
    base, cut = shares.get("baseline"), shares.get("cut")
    if base is None and cut is None:
        return "no samples"
    if cut is None:
        return f"{base:.1%}" if base is not None else "-"
    return f"{'-' if base is None else f'{base:.1%}'} -> {cut:.1%}"


def annotate_function(
    disassembler: Disassembler, function: str, trial: dict[str, Any] | None
) -> dict[str, Any]:
    """The annotated listing of ``function`` with ``trial``'s cuts and profile shares (JSON)."""
    table = disassembler.table
    symbol = table.lookup(function)
    size = symbol.size or 64
    note = None
    try:
        lines = disassembler.lines(symbol.address, size, source=True)
    except NotFound as exc:
        lines = disassembler.lines(symbol.address, size)
        note = f"no source lines: {exc}"
    ranges = _cut_ranges(table, (trial or {}).get("cuts") or [])
    counts = _counts(table, trial, symbol.name)
    text = render_text(lines, None, disassembler.source_text)
    by_address = {line.insn.address: line for line in lines}
    listing, marked = [], []
    for row in text:
        line = by_address.get(_address_of(row)) if _is_insn(row) else None
        if line is None:
            listing.append(row)
            continue
        cut = next((c for a, e, c in ranges if a <= line.insn.address < e), None)
        comment, record = _annotation(line, counts, cut, disassembler.arch.is_call(line.insn))
        listing.append(("=>" if cut is not None else "  ") + row[2:] + comment)
        if record is not None:
            record["source"] = f"{line.source.file}:{line.source.line}" if line.source else None
            marked.append(record)
    return {
        "function": symbol.name,
        "address": f"{symbol.address:#x}",
        "size": size,
        "arch": disassembler.arch.name,
        "busy": {arm: counts[arm]["busy"] for arm in ARMS},
        "listing": listing,
        "marked": marked,
        "cuts": [_cut_record(disassembler, lines, a, c) for a, _, c in ranges],
        "note": note,
    }


def _is_insn(row: str) -> bool:
    return row[:2] in ("  ", "=>") and row[3:5] == "0x"


def _address_of(row: str) -> int:
    return int(row[3:21], 16)


def _cut_record(
    disassembler: Disassembler, lines: Sequence[DisasmLine], address: int, cut: dict[str, Any]
) -> dict[str, Any]:
    """A cut's source line and its bytes before and after, decoded."""
    arch = disassembler.arch
    source = next(
        (
            f"{ln.source.file}:{ln.source.line}"
            for ln in lines
            if ln.insn.address == address and ln.source is not None
        ),
        None,
    )
    return {
        "location": cut.get("location"),
        "source": source,
        "before": [i.text for i in decode_all(bytes.fromhex(cut.get("old", "")), arch, address)],
        "after": [i.text for i in decode_all(bytes.fromhex(cut.get("new", "")), arch, address)],
    }
