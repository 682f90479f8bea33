"""Capstone's disassembler through ctypes, without importing the capstone package.

``import capstone`` costs about 0.14 s of start-up (it locates its library
through :mod:`importlib.resources` and defines every architecture's
tables); knockout needs one call, ``cs_disasm`` without details.  This
loads the same ``libcapstone.so`` that the capstone wheel ships and calls
it directly.  When the library is not where the wheel puts it, or is not
capstone 5, :func:`open_disassembler` falls back to the capstone package.

>>> d = open_disassembler(3, 8)  # CS_ARCH_X86, CS_MODE_64
>>> list(d(bytes.fromhex("31c0c3"), 0x1000))
[(4096, 2, 'xor', 'eax, eax'), (4098, 1, 'ret', '')]
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from collections.abc import Callable, Iterator

__all__ = ["Disasm", "open_disassembler"]

#: decodes ``code`` at ``address``: ``(address, size, mnemonic, op_str)`` per instruction
Disasm = Callable[[bytes, int], Iterator[tuple[int, int, str, str]]]

_API_MAJOR = 5


class _Insn(ctypes.Structure):
    """``cs_insn`` of capstone 5 (the detail pointer is never followed: details are off)."""

    _fields_ = (
        ("id", ctypes.c_uint),
        ("address", ctypes.c_uint64),
        ("size", ctypes.c_uint16),
        ("bytes", ctypes.c_ubyte * 24),
        ("mnemonic", ctypes.c_char * 32),
        ("op_str", ctypes.c_char * 160),
        ("detail", ctypes.c_void_p),
    )


def _library_path() -> str | None:
    """The capstone wheel's ``libcapstone.so`` on ``sys.path``, without importing the package."""
    for entry in sys.path:
        path = os.path.join(entry or ".", "capstone", "lib", "libcapstone.so")
        if os.path.exists(path):
            return path
        path = os.path.join(entry or ".", "capstone", "libcapstone.so")
        if os.path.exists(path):
            return path
    return None


@functools.cache
def _library() -> ctypes.CDLL | None:
    path = _library_path()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.cs_version(ctypes.byref(major), ctypes.byref(minor))
    if major.value != _API_MAJOR:
        return None
    lib.cs_open.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_size_t)]
    lib.cs_open.restype = ctypes.c_int
    lib.cs_disasm.argtypes = [
        ctypes.c_size_t,
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint64,
        ctypes.c_size_t,
        ctypes.POINTER(ctypes.POINTER(_Insn)),
    ]
    lib.cs_disasm.restype = ctypes.c_size_t
    lib.cs_free.argtypes = [ctypes.POINTER(_Insn), ctypes.c_size_t]
    lib.cs_free.restype = None
    return lib


def _ctypes_disassembler(lib: ctypes.CDLL, arch: int, mode: int) -> Disasm | None:
    handle = ctypes.c_size_t()
    if lib.cs_open(arch, mode, ctypes.byref(handle)) != 0:
        return None

    def disasm(code: bytes, address: int) -> Iterator[tuple[int, int, str, str]]:
        insns = ctypes.POINTER(_Insn)()
        count = lib.cs_disasm(handle, code, len(code), address, 0, ctypes.byref(insns))
        try:
            for i in range(count):
                insn = insns[i]
                yield (
                    insn.address,
                    insn.size,
                    insn.mnemonic.decode("ascii", "replace"),
                    insn.op_str.decode("ascii", "replace"),
                )
        finally:
            if count:
                lib.cs_free(insns, count)

    return disasm


def _package_disassembler(arch: int, mode: int) -> Disasm:
    import capstone

    cs = capstone.Cs(arch, mode)
    cs.detail = False

    def disasm(code: bytes, address: int) -> Iterator[tuple[int, int, str, str]]:
        for address_, size, mnemonic, op_str in cs.disasm_lite(code, address):
            yield int(address_), int(size), str(mnemonic), str(op_str)

    return disasm


@functools.cache
def open_disassembler(arch: int, mode: int) -> Disasm:
    """A decoder for capstone 5's ``CS_ARCH_*``/``CS_MODE_*`` numbers ``arch`` and ``mode``."""
    lib = _library()
    made = _ctypes_disassembler(lib, arch, mode) if lib is not None else None
    return made or _package_disassembler(arch, mode)
