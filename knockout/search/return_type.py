"""A function's return type from DWARF: what value a cut returns (pointer -> NULL, int -> 0, void).

Only the compile unit holding the function is read, and only its top-level
DIEs (skipping each one's children by ``DW_AT_sibling``): a lookup in a
debug vmlinux costs about a second.

>>> ReturnType("pointer", "struct page *").value, ReturnType("void", "void").value
(0, None)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from elftools.common.exceptions import DWARFError, ELFError

from knockout.dwarf import dwarf_lines
from knockout.errors import KnockoutError

__all__ = ["UNKNOWN", "ReturnType", "return_type"]

#: DW_ATE_* encodings of floating-point base types (returned in vector registers)
_FLOAT_ENCODINGS = frozenset({0x03, 0x04, 0x09, 0x0A})  # complex, float, imaginary, decimal
_QUALIFIERS = frozenset(
    {"DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type", "DW_TAG_restrict_type"}
    | {"DW_TAG_atomic_type"}
)
_POINTERS = frozenset(
    {"DW_TAG_pointer_type", "DW_TAG_reference_type", "DW_TAG_rvalue_reference_type"}
)
_TAGGED = {
    "DW_TAG_structure_type": "struct",
    "DW_TAG_union_type": "union",
    "DW_TAG_enumeration_type": "enum",
    "DW_TAG_class_type": "class",
}


@dataclass(frozen=True)
class ReturnType:
    """What a function returns: ``kind`` is void, pointer, integer, other (float, struct) or
    unknown (no DWARF); ``name`` is the C spelling DWARF gives."""

    kind: str
    name: str

    @property
    def value(self) -> int | None:
        """The value a cut returns: NULL or 0 (also where unknown), None for void."""
        return None if self.kind == "void" else 0

    @property
    def in_register(self) -> bool:
        """The value is returned in the integer return register (rax, x0)."""
        return self.kind in ("pointer", "integer", "unknown")


UNKNOWN = ReturnType("unknown", "?")


def _name(die: Any) -> str:
    attr = die.attributes.get("DW_AT_name")
    return attr.value.decode("utf-8", "replace") if attr is not None else ""


def _spelling(die: Any) -> str:
    """``struct page``, ``long int``, ``mytype``: how C names the type ``die``."""
    tag = _TAGGED.get(die.tag)
    return f"{tag} {_name(die)}" if tag else _name(die) or "?"


def _type_of(die: Any, depth: int = 0) -> ReturnType:
    """The kind of the type ``die`` is, through typedefs and qualifiers."""
    tag = die.tag
    if depth > 16:
        return UNKNOWN
    has_type = "DW_AT_type" in die.attributes
    if tag in _POINTERS:
        target = _spelling(die.get_DIE_from_attribute("DW_AT_type")) if has_type else "void"
        return ReturnType("pointer", f"{target} *")
    if tag in _QUALIFIERS:
        if not has_type:
            return ReturnType("void", "void")
        inner = _type_of(die.get_DIE_from_attribute("DW_AT_type"), depth + 1)
        return ReturnType(inner.kind, _name(die) if tag == "DW_TAG_typedef" else inner.name)
    if tag == "DW_TAG_base_type":
        encoding = die.attributes.get("DW_AT_encoding")
        is_float = encoding is not None and encoding.value in _FLOAT_ENCODINGS
        return ReturnType("other" if is_float else "integer", _name(die))
    if tag == "DW_TAG_enumeration_type":
        return ReturnType("integer", _spelling(die))
    return ReturnType("other", _spelling(die))


def _declared(die: Any) -> Any:
    """The DIE that carries the type: through DW_AT_abstract_origin / DW_AT_specification."""
    for _ in range(4):
        if "DW_AT_type" in die.attributes:
            return die
        for link in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if link in die.attributes:
                die = die.get_DIE_from_attribute(link)
                break
        else:
            return die
    return die


def _cu_offset(info: Any, address: int) -> int | None:
    if info.debug_aranges_sec is not None:
        offset = info.get_aranges().cu_offset_at_addr(address)
        if offset is not None:
            return int(offset)
    for cu in info.iter_CUs():
        top = cu.get_top_DIE()
        low, high = top.attributes.get("DW_AT_low_pc"), top.attributes.get("DW_AT_high_pc")
        if low is not None and high is not None:
            end = high.value if high.form == "DW_FORM_addr" else low.value + high.value
            if low.value <= address < end:
                return int(cu.cu_offset)
    return None


def _subprogram(parent: Any, address: int, depth: int = 0) -> Any:
    """The DW_TAG_subprogram whose code starts at ``address`` (namespaces searched too)."""
    for die in parent.iter_children():
        if die.tag == "DW_TAG_subprogram":
            low = die.attributes.get("DW_AT_low_pc")
            if low is not None and low.value == address:
                return die
        elif die.tag in ("DW_TAG_namespace", "DW_TAG_class_type") and depth < 4:
            found = _subprogram(die, address, depth + 1)
            if found is not None:
                return found
    return None


def return_type(path: str, address: int) -> ReturnType:
    """The return type of the function whose code starts at link-time ``address`` in ``path``.

    :data:`UNKNOWN` when the file (or its debug file) has no DWARF for it.
    """
    try:
        lines = dwarf_lines(path)
        if lines is None:
            return UNKNOWN
        info = lines.info
        offset = _cu_offset(info, address)
        if offset is None:
            return UNKNOWN
        die = _subprogram(info.get_CU_at(offset).get_top_DIE(), address)
        if die is None:
            return UNKNOWN
        declared = _declared(die)
        if "DW_AT_type" not in declared.attributes:
            return ReturnType("void", "void")
        return _type_of(declared.get_DIE_from_attribute("DW_AT_type"))
    except (KnockoutError, DWARFError, ELFError, KeyError, IndexError, ValueError, OSError):
        return UNKNOWN
