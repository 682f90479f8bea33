"""What the report says about the target: a process's command line and build-id, or the kernel.

The saved trial names its target only as a description (``pid 1234 (/usr/bin/app)``);
these records, taken while the target runs, are saved in the report's JSON as
``target_info`` so that a re-rendered report still shows them.

>>> notes = (4).to_bytes(4, "little") + (3).to_bytes(4, "little") + (3).to_bytes(4, "little")
>>> gnu_build_id(notes + b"GNU\\0" + bytes.fromhex("abcdef") + b"\\0")
'abcdef'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from knockout.errors import NotFound

__all__ = ["describe_kernel", "describe_process", "gnu_build_id"]

#: the ELF note type of a GNU build-id
NT_GNU_BUILD_ID = 3


def gnu_build_id(notes: bytes) -> str | None:
    """The GNU build-id in a block of ELF notes (``/sys/kernel/notes``), as hex."""
    offset = 0
    while offset + 12 <= len(notes):
        namesz, descsz, kind = (
            int.from_bytes(notes[offset + i : offset + i + 4], "little") for i in (0, 4, 8)
        )
        name_at = offset + 12
        desc_at = name_at + (namesz + 3) // 4 * 4
        if notes[name_at : name_at + namesz].rstrip(b"\0") == b"GNU" and kind == NT_GNU_BUILD_ID:
            return notes[desc_at : desc_at + descsz].hex()
        offset = desc_at + (descsz + 3) // 4 * 4
    return None


def describe_process(pid: int) -> dict[str, Any]:
    """``kind``, ``pid``, ``cmdline``, ``exe`` and ``build_id`` of a running process."""
    proc = Path(f"/proc/{pid}")
    try:
        argv = (proc / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        exe = os.readlink(proc / "exe")
    except FileNotFoundError:
        raise NotFound(f"no process {pid}; describe the target while it runs") from None
    except PermissionError:
        argv, exe = [], ""
    build_id = None
    if exe:
        from knockout.elf import open_elf

        try:
            build_id = open_elf(exe.removesuffix(" (deleted)")).build_id()
        except (OSError, ValueError, LookupError):
            build_id = None
    return {
        "kind": "process",
        "pid": pid,
        "cmdline": " ".join(a.decode(errors="replace") for a in argv),
        "exe": exe,
        "build_id": build_id,
    }


def describe_kernel() -> dict[str, Any]:
    """``kind``, ``release``, ``version``, ``machine`` and ``build_id`` of the running kernel."""
    uname = os.uname()
    try:
        build_id = gnu_build_id(Path("/sys/kernel/notes").read_bytes())
    except OSError:
        build_id = None
    return {
        "kind": "kernel",
        "release": uname.release,
        "version": uname.version,
        "machine": uname.machine,
        "build_id": build_id,
    }
