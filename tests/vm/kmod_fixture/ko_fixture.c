// SPDX-License-Identifier: GPL-2.0
/*
 * ko_fixture.c - TEST ONLY: code shapes knockout.ko must refuse to cut.
 *
 * tests/vm/test_kmod_refusals.py loads this module in the guest and asks
 * knockout.ko to cut ranges of these functions; each range hides a way back
 * into its interior that the bytes of the range alone do not show.  None of
 * this code is ever run: the module has no entry points, only symbols.
 *
 *   kofx_indirect_call   "call *%rax" + NOP3: what the kernel makes of a
 *                        retpoline call on an eIBRS CPU.  Cut at the call:
 *                        a task sleeping in the callee returns to +2, inside
 *                        the 5-byte jmp.
 *   kofx_cold_fn         a function whose "kofx_cold_fn.cold" part jumps
 *                        back to kofx_cold_fn+15.  Cut +9..+21.
 *   kofx_extable_fn      a load at +5 whose exception-table fixup is +13.
 *                        Cut +7..+19: no displaced instruction faults, but the
 *                        fixup lands inside.
 *
 * Offsets are fixed by the hand-written bytes below; the test reads the
 * symbols from /proc/kallsyms and checks the bytes before it asks.  The
 * module has no C function at all (see the end of the file).
 */
#include <linux/module.h>
#include <asm/asm.h>

asm(
"	.pushsection .text, \"ax\"\n"
"	.balign 16\n"
"	.type kofx_indirect_call, @function\n"
"kofx_indirect_call:\n"
"	.byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n"	/* +0  nopl 0x0(%rax,%rax,1) */
"	movq %rdi, %rax\n"			/* +5  48 89 f8 */
"	.byte 0xff, 0xd0\n"			/* +8  call *%rax */
"	.byte 0x0f, 0x1f, 0x00\n"		/* +10 nopl (%rax) */
"	xorl %eax, %eax\n"			/* +13 31 c0 */
"	ret\n"					/* +15 c3 */
"	.size kofx_indirect_call, . - kofx_indirect_call\n"
"\n"
"	.balign 16\n"
"	.type kofx_cold_fn, @function\n"
"kofx_cold_fn:\n"
"	.byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n"	/* +0  nopl */
"	xorl %eax, %eax\n"			/* +5  31 c0 */
"	testl %edi, %edi\n"			/* +7  85 ff */
"	.byte 0x0f, 0x85\n"			/* +9  jne kofx_cold_fn.cold (rel32) */
"	.long kofx_cold_fn.cold - (. + 4)\n"
".Lkofx_cold_back:\n"
"	.byte 0x83, 0xc0, 0x01\n"		/* +15 add $1, %eax */
"	.byte 0x83, 0xc0, 0x02\n"		/* +18 add $2, %eax */
"	ret\n"					/* +21 */
"	.size kofx_cold_fn, . - kofx_cold_fn\n"
"\n"
"	.balign 16\n"
"	.type kofx_extable_fn, @function\n"
"kofx_extable_fn:\n"
"	.byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n"	/* +0  nopl */
".Lkofx_extable_load:\n"
"	movl (%rdi), %eax\n"			/* +5  8b 07: may fault */
"	.byte 0x83, 0xc0, 0x01\n"		/* +7  add $1, %eax */
"	.byte 0x83, 0xc0, 0x02\n"		/* +10 add $2, %eax */
".Lkofx_extable_fixup:\n"
"	.byte 0x83, 0xc0, 0x03\n"		/* +13 add $3, %eax: the fixup */
"	.byte 0x83, 0xc0, 0x04\n"		/* +16 add $4, %eax */
"	ret\n"					/* +19 */
"	.size kofx_extable_fn, . - kofx_extable_fn\n"
	_ASM_EXTABLE(.Lkofx_extable_load, .Lkofx_extable_fixup)
"	.popsection\n"
"\n"
"	.pushsection .text.unlikely, \"ax\"\n"
"	.type kofx_cold_fn.cold, @function\n"
"kofx_cold_fn.cold:\n"
"	movl $7, %eax\n"			/* b8 07 00 00 00 */
"	.byte 0xe9\n"				/* jmp kofx_cold_fn+15 (rel32) */
"	.long .Lkofx_cold_back - (. + 4)\n"
"	.size kofx_cold_fn.cold, . - kofx_cold_fn.cold\n"
"	.popsection\n"
);

/*
 * No module_init()/module_exit(): this object is built without objtool
 * (Kbuild), so any C function in it would keep the compiler's
 * "jmp __x86_return_thunk" returns with no .return_sites entry for the
 * module loader's apply_returns() to patch.  Since Linux kernel commit
 * 4461438a8405 ("x86/retpoline: Ensure default return thunk isn't used at
 * runtime") (in v6.9) that thunk warns when it runs ("Unpatched return thunk
 * in use", __warn_thunk in dmesg at insmod): the second-kernel test saw it on
 * 6.12.  A module with neither function loads and unloads all the same
 * (delete_module() refuses only an init without an exit).
 */
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("TEST ONLY: code shapes knockout.ko must refuse to cut");
