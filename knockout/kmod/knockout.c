// SPDX-License-Identifier: GPL-2.0
/*
 * knockout.c - cut code out of the running kernel, and put it back.
 *
 * One generic module driven through /proc/knockout (0600, CAP_SYS_ADMIN
 * checked on open).  One command per write(); the answer (or a one-line
 * error saying what to do) is read back from the same file descriptor at
 * offset 0.  Reading a fresh descriptor lists the active cuts.
 *
 *   read ADDR LEN                  -> hex bytes at ADDR (kernel/module text)
 *   cut ADDR OLDHEX NEWHEX TTL_MS  -> "id=N"
 *   renew ID TTL_MS
 *   revert ID
 *   revert all
 *   list
 *   kprobe ADDR pass|ret=HEX TTL_MS -> "id=N" (the kprobe way, to compare)
 *   poke ADDR HEX                  -> TEST ONLY, off unless allow_test_poke=1
 *
 * ADDR is hex (optional 0x), LEN/ID/TTL_MS decimal, OLDHEX/NEWHEX an even
 * number of hex digits of equal length.  Anything else is -EINVAL and
 * nothing is written.
 *
 * How a cut is written (x86_64)
 * -----------------------------
 * text_poke_bp() (smp_text_poke_single() from Linux 6.16) replaces up to 5
 * bytes while other CPUs run them: INT3 on the first byte, sync, the tail,
 * sync, the first byte, sync; a CPU that hits the INT3 meanwhile is
 * *emulated*, and text_poke_loc_init() only knows how to emulate INT3, RET,
 * CALL, JMP32, JMP8 and NOP (anything else is BUG()).  So a cut is never
 * copied in place: the replacement lives in a stub in this module's own
 * text (a static area, written with text_poke() while nothing can reach
 * it), and the site gets one "jmp rel32 -> stub":
 *
 *   stub = NEW (rel32 branches and RIP-relative operands re-aimed, since
 *          NEW is expressed as if it ran at ADDR) + "jmp ADDR+len(OLD)"
 *   site = text_poke_bp(ADDR, jmp stub, 5, emulate = the jmp itself)
 *
 * len(OLD) >= 5 and OLD must be whole instructions: like the checks x86
 * optprobes make before they displace instructions (can_optimize() in
 * arch/x86/kernel/kprobes/opt.c), the function is decoded from its start
 * with the kernel's own decoder; ADDR and ADDR+len(OLD) must be
 * instruction boundaries, no relative branch in the function may target
 * the interior of the range, the function must have no indirect jump (a
 * jump table could target the interior), no displaced instruction may
 * have an exception-table entry, and NEW may not contain a CALL (the
 * return address would point into a stub that is recycled later), UD2
 * (BUG/WARN are looked up by address) or INT3.  Ranges the kernel itself
 * rewrites (ftrace, jump labels, static calls, SMP alternatives) and the
 * kprobe blacklist (entry code, the INT3 handler, noinstr) are refused.
 *
 * Revert writes the original 5 bytes back with text_poke_bp(ADDR, OLD[0:5],
 * 5, emulate = "jmp stub"): while the INT3 is in place a CPU that hits it
 * behaves exactly as if it arrived just before the revert (the cut stub
 * still exists), and text_poke_bp never has to emulate an arbitrary
 * original instruction.  The stub slot is then quarantined until
 * synchronize_rcu() and synchronize_rcu_tasks() have passed (a task may be
 * preempted inside a stub; the same rule optprobes follow before freeing a
 * trampoline), and only then reused.
 *
 * arm64 writes the NEW words in place with aarch64_insn_patch_text()
 * (stop_machine() plus cache maintenance).  A cut of more than one word is
 * therefore atomic for running CPUs but not for a task preempted between
 * two of the words; the arm64 stub path is future work (see the issue).
 *
 * Dead-man switch: every cut has a TTL; unless renewed, the module reverts
 * it itself.  Unloading reverts every cut.  A cut whose bytes changed under
 * it (someone else wrote there) is never overwritten: it is marked stuck and
 * the module pins itself so that it cannot be unloaded with a jump into its
 * text still live.
 *
 * TEST ONLY: "poke ADDR HEX" writes raw bytes over kernel or module text
 * through the same text-poke path a cut uses, with none of a cut's checks
 * beyond "this is text".  It exists so that tests/vm can change the bytes
 * under a live cut and watch the stuck path above happen for real.  It is
 * refused with -EPERM unless the module was loaded with allow_test_poke=1
 * (insmod knockout.ko allow_test_poke=1), which nothing but the tests does
 * and which is only ever done in a throw-away guest.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/ctype.h>
#include <linux/extable.h>
#include <linux/jiffies.h>
#include <linux/kallsyms.h>
#include <linux/kernel.h>
#include <linux/kprobes.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/proc_fs.h>
#include <linux/rcupdate.h>
#include <linux/security.h>
#include <linux/slab.h>
#include <linux/stringify.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>
#include <asm/unaligned.h>
#ifdef CONFIG_X86
#include <asm/insn.h>
#include <asm/text-patching.h>
#endif

#define KO_MAX_LEN	32	/* bytes a cut may span */
#define KO_MAX_READ	4096	/* bytes one "read" may return */
#define KO_MAX_TTL_MS	(24 * 3600 * 1000U)
#define KO_CMD_MAX	(16 + 2 * 2 * KO_MAX_LEN + 64)
#define KO_OUT_MAX	(2 * KO_MAX_READ + 64)
#define KO_SLOT_SIZE	64
#define KO_NR_SLOTS	512
#define KO_JMP_LEN	5

#if defined(CONFIG_X86_64)
#define KO_MIN_LEN	KO_JMP_LEN
#elif defined(CONFIG_ARM64)
#define KO_MIN_LEN	AARCH64_INSN_SIZE
#else
#error "knockout supports x86_64 and arm64"
#endif

/* ---------------------------------------------------------------------- */
/* Kernel functions that are not exported, found through kallsyms.        */

struct ko_syms {
	unsigned long (*kallsyms_lookup_name)(const char *name);
	int (*kallsyms_lookup_size_offset)(unsigned long addr,
					   unsigned long *size,
					   unsigned long *offset);
	int (*core_kernel_text)(unsigned long addr);
	struct module *(*module_text_address)(unsigned long addr);
	bool (*within_kprobe_blacklist)(unsigned long addr);
	int (*jump_label_text_reserved)(void *start, void *end);
	int (*static_call_text_reserved)(void *start, void *end);
	int (*ftrace_text_reserved)(const void *start, const void *end);
	int (*alternatives_text_reserved)(void *start, void *end);
	void (*jump_label_lock)(void);
	void (*jump_label_unlock)(void);
	const struct exception_table_entry *(*search_exception_tables)(unsigned long addr);
	struct mutex *text_mutex;
#ifdef CONFIG_X86_64
	void *(*text_poke)(void *addr, const void *opcode, size_t len);
	void (*text_poke_bp)(void *addr, const void *opcode, size_t len,
			     const void *emulate);
	int (*insn_decode)(struct insn *insn, const void *kaddr, int buf_len,
			   enum insn_mode m);
#endif
#ifdef CONFIG_ARM64
	int (*aarch64_insn_patch_text)(void *addrs[], u32 insns[], int cnt);
#endif
};

static struct ko_syms ko;

/*
 * kallsyms_lookup_name() is not exported since Linux 5.7 (commit
 * 0bd476e6c671, "kallsyms: unexport kallsyms_lookup_name() and
 * kallsyms_on_each_symbol()").  A kprobe still resolves a name to an
 * address, so register one on kallsyms_lookup_name itself and read back
 * where it landed.
 */
static int ko_find_kallsyms_lookup_name(void)
{
	struct kprobe kp = { .symbol_name = "kallsyms_lookup_name" };
	unsigned long addr;
	int ret;

	ret = register_kprobe(&kp);
	if (ret < 0) {
		pr_err("cannot find kallsyms_lookup_name with a kprobe (%d); the kernel needs CONFIG_KPROBES\n",
		       ret);
		return ret;
	}
	addr = (unsigned long)kp.addr;
	unregister_kprobe(&kp);
	ko.kallsyms_lookup_name = (void *)addr;
	/* the probe may sit past an ENDBR: ask the function for its own start */
	addr = ko.kallsyms_lookup_name("kallsyms_lookup_name");
	if (addr)
		ko.kallsyms_lookup_name = (void *)addr;
	return 0;
}

static void *ko_lookup(const char *name, bool required)
{
	unsigned long addr = ko.kallsyms_lookup_name(name);

	if (!addr && required)
		pr_err("kernel symbol %s not found in kallsyms; this kernel is not supported\n",
		       name);
	return (void *)addr;
}

#define KO_LOOKUP(field, name, required)				\
	do {								\
		ko.field = ko_lookup(name, required);			\
		if ((required) && !ko.field)				\
			return -ENOENT;					\
	} while (0)

static int ko_resolve(void)
{
	int ret = ko_find_kallsyms_lookup_name();

	if (ret)
		return ret;
	KO_LOOKUP(kallsyms_lookup_size_offset, "kallsyms_lookup_size_offset", true);
	KO_LOOKUP(core_kernel_text, "core_kernel_text", true);
	KO_LOOKUP(module_text_address, "__module_text_address", true);
	KO_LOOKUP(within_kprobe_blacklist, "within_kprobe_blacklist", true);
	KO_LOOKUP(search_exception_tables, "search_exception_tables", true);
	KO_LOOKUP(text_mutex, "text_mutex", true);
	/* absent when the feature is configured out: then nothing is reserved */
	KO_LOOKUP(jump_label_text_reserved, "jump_label_text_reserved", false);
	KO_LOOKUP(jump_label_lock, "jump_label_lock", false);
	KO_LOOKUP(jump_label_unlock, "jump_label_unlock", false);
	KO_LOOKUP(static_call_text_reserved, "static_call_text_reserved", false);
	KO_LOOKUP(ftrace_text_reserved, "ftrace_text_reserved", false);
	KO_LOOKUP(alternatives_text_reserved, "alternatives_text_reserved", false);
#ifdef CONFIG_X86_64
	KO_LOOKUP(text_poke, "text_poke", true);
	KO_LOOKUP(insn_decode, "insn_decode", true);
	/*
	 * text_poke_bp() was renamed smp_text_poke_single() in Linux 6.16
	 * (the x86/alternatives rework merged for v6.16); same arguments.
	 */
	KO_LOOKUP(text_poke_bp, "text_poke_bp", false);
	if (!ko.text_poke_bp)
		KO_LOOKUP(text_poke_bp, "smp_text_poke_single", true);
#endif
#ifdef CONFIG_ARM64
	KO_LOOKUP(aarch64_insn_patch_text, "aarch64_insn_patch_text", true);
#endif
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Stub slots (x86_64): a static area of this module's text.             */

#ifdef CONFIG_X86_64
asm(".pushsection .text.knockout_stubs, \"ax\"\n"
    ".balign " __stringify(KO_SLOT_SIZE) "\n"
    ".globl knockout_stub_area\n"
    "knockout_stub_area:\n"
    ".fill " __stringify(KO_NR_SLOTS * KO_SLOT_SIZE) ", 1, 0xcc\n"
    ".popsection\n");
extern u8 knockout_stub_area[];
#endif

enum ko_slot_state { KO_SLOT_FREE, KO_SLOT_USED, KO_SLOT_COOLING };

static u8 ko_slot_state[KO_NR_SLOTS];
static u64 ko_slot_gen[KO_NR_SLOTS];
static u64 ko_gen;	/* grace-period generation */

/* ---------------------------------------------------------------------- */
/* Cuts.                                                                  */

struct ko_cut {
	struct list_head node;
	u32 id;
	unsigned long addr;
	unsigned int len;
	u8 old[KO_MAX_LEN];
	u8 new[KO_MAX_LEN];
	u8 site[KO_MAX_LEN];	/* what this cut wrote at addr */
	unsigned int site_len;
	int slot;		/* x86_64 stub slot, -1 on arm64 */
	struct module *owner;	/* module whose text is cut, NULL for vmlinux */
	unsigned long deadline;	/* jiffies */
	bool stuck;		/* bytes changed under it: never touched again */
	/* a kprobe "cut" (for comparison, and where text cannot be cut) */
	struct kprobe *kp;
	bool kp_return;		/* return kp_value at the probe, else only pass */
	unsigned long kp_value;
};

/* TEST ONLY: see the header comment ("poke").  Read-only once loaded. */
static bool allow_test_poke;
module_param(allow_test_poke, bool, 0400);
MODULE_PARM_DESC(allow_test_poke,
		 "TEST ONLY: enable the 'poke ADDR HEX' command that writes raw bytes into kernel text (default off; never in production)");

static DEFINE_MUTEX(ko_lock);	/* cuts, slots, ids; taken before text_mutex */
static LIST_HEAD(ko_cuts);
static u32 ko_next_id = 1;
static bool ko_pinned;

static void ko_reaper_fn(struct work_struct *work);
static DECLARE_DELAYED_WORK(ko_reaper, ko_reaper_fn);
static void ko_grace_fn(struct work_struct *work);
static DECLARE_WORK(ko_grace, ko_grace_fn);

/* A one-line answer for the reader; the errno goes to write(). */
struct ko_file {
	struct mutex lock;
	size_t len;
	bool answered;
	char out[KO_OUT_MAX];
};

static __printf(2, 3) void ko_say(struct ko_file *f, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vscnprintf(f->out, sizeof(f->out), fmt, ap);
	va_end(ap);
	f->len = n;
	f->answered = true;
}

static bool ko_in_own_text(unsigned long addr)
{
	return within_module(addr, THIS_MODULE);
}

/*
 * Which text is [addr, addr+len)?  Core kernel text (init text is gone
 * after boot: core_kernel_text() then says no), or the core text of one
 * live module other than this one.  Takes a reference on that module.
 */
static int ko_claim_text(struct ko_file *f, unsigned long addr,
			 unsigned int len, struct module **owner)
{
	unsigned long last = addr + len - 1;
	struct module *mod;

	*owner = NULL;
	if (last < addr) {
		ko_say(f, "error: range wraps around\n");
		return -EINVAL;
	}
	if (ko_in_own_text(addr) || ko_in_own_text(last)) {
		ko_say(f, "error: %lx is knockout's own text; cut something else\n", addr);
		return -EPERM;
	}
	if (ko.core_kernel_text(addr) && ko.core_kernel_text(last))
		return 0;
	preempt_disable();
	mod = ko.module_text_address(addr);
	if (mod && mod == ko.module_text_address(last) &&
	    !within_module_init(addr, mod) && mod->state == MODULE_STATE_LIVE &&
	    try_module_get(mod)) {
		*owner = mod;
		preempt_enable();
		return 0;
	}
	preempt_enable();
	ko_say(f, "error: %lx..%lx is not kernel or module text; use an address from /proc/kallsyms (type t/T)\n",
	       addr, last + 1);
	return -EFAULT;
}

static void ko_release_text(struct module *owner)
{
	if (owner)
		module_put(owner);
}

/* Is [addr, addr+len) something the kernel itself rewrites or forbids? */
static int ko_check_reserved(struct ko_file *f, unsigned long addr, unsigned int len)
{
	void *start = (void *)addr, *end = (void *)(addr + len - 1);
	const char *what = NULL;

	if (ko.within_kprobe_blacklist(addr))
		what = "on the kprobe blacklist (entry code, int3/text-poke machinery, noinstr)";
	if (!what && ko.jump_label_text_reserved) {
		if (ko.jump_label_lock)
			ko.jump_label_lock();
		if (ko.jump_label_text_reserved(start, end))
			what = "a jump label (static key) site";
		if (ko.jump_label_unlock)
			ko.jump_label_unlock();
	}
	if (!what && ko.static_call_text_reserved && ko.static_call_text_reserved(start, end))
		what = "a static call site";
	if (!what && ko.ftrace_text_reserved && ko.ftrace_text_reserved(start, end))
		what = "an ftrace call site (cut after the function's __fentry__ NOP)";
	if (!what && ko.alternatives_text_reserved && ko.alternatives_text_reserved(start, end))
		what = "an SMP-alternatives lock prefix";
	if (!what)
		return 0;
	ko_say(f, "error: %pS..+%u is %s; the kernel rewrites or forbids it: choose another instruction\n",
	       start, len, what);
	return -EBUSY;
}

static struct ko_cut *ko_find_overlap(unsigned long addr, unsigned int len)
{
	struct ko_cut *c;

	list_for_each_entry(c, &ko_cuts, node)
		if (addr < c->addr + c->len && c->addr < addr + len)
			return c;
	return NULL;
}

static struct ko_cut *ko_find_id(u32 id)
{
	struct ko_cut *c;

	list_for_each_entry(c, &ko_cuts, node)
		if (c->id == id)
			return c;
	return NULL;
}

#ifdef CONFIG_X86_64

/* Original bytes at ip, seen through the cuts this module has in place. */
static void ko_read_orig(unsigned long ip, u8 *buf, unsigned int n)
{
	struct ko_cut *c;
	unsigned int i;

	memcpy(buf, (void *)ip, n);
	list_for_each_entry(c, &ko_cuts, node) {
		for (i = 0; i < c->site_len; i++) {
			unsigned long a = c->addr + i;

			if (a >= ip && a < ip + n)
				buf[a - ip] = c->old[i];
		}
	}
}

static bool ko_x86_rel_branch(const struct insn *insn, bool *rel8)
{
	u8 op0 = insn->opcode.bytes[0];

	*rel8 = false;
	if (op0 == 0xe8 || op0 == 0xe9)
		return true;
	if (op0 == 0x0f && insn->opcode.nbytes == 2 &&
	    (insn->opcode.bytes[1] & 0xf0) == 0x80)
		return true;
	if (op0 == 0xeb || (op0 >= 0x70 && op0 <= 0x7f) ||
	    (op0 >= 0xe0 && op0 <= 0xe3)) {
		*rel8 = true;
		return true;
	}
	return false;
}

static bool ko_x86_rip_relative(const struct insn *insn)
{
	return insn->modrm.nbytes &&
	       X86_MODRM_MOD(insn->modrm.bytes[0]) == 0 &&
	       X86_MODRM_RM(insn->modrm.bytes[0]) == 5;
}

static bool ko_x86_indirect_jump(const struct insn *insn)
{
	u8 reg;

	if (insn->opcode.bytes[0] != 0xff || !insn->modrm.nbytes)
		return false;
	reg = X86_MODRM_REG(insn->modrm.bytes[0]);
	return reg == 4 || reg == 5;
}

static bool ko_x86_no_fallthrough(const struct insn *insn)
{
	u8 op0 = insn->opcode.bytes[0];

	return op0 == 0xc3 || op0 == 0xc2 || op0 == 0xe9 || op0 == 0xeb ||
	       op0 == 0xcc || ko_x86_indirect_jump(insn) ||
	       (op0 == 0x0f && insn->opcode.bytes[1] == 0x0b);
}

/*
 * Decode the whole function around addr (as it was before any of our cuts)
 * and check that [addr, addr+len) can be displaced: see the header comment.
 */
static int ko_x86_check_function(struct ko_file *f, unsigned long addr, unsigned int len)
{
	unsigned long size, offset, start, end, ip;
	bool at_addr = false, at_end = false, prev_stop = true;
	u8 buf[MAX_INSN_SIZE];
	struct insn insn;

	if (!ko.kallsyms_lookup_size_offset(addr, &size, &offset)) {
		ko_say(f, "error: no symbol covers %lx; cut inside a known function\n", addr);
		return -EINVAL;
	}
	start = addr - offset;
	end = start + size;
	if (addr + len > end) {
		ko_say(f, "error: %pS..+%u runs past the end of its function\n", (void *)addr, len);
		return -EINVAL;
	}
	if (IS_ENABLED(CONFIG_X86_KERNEL_IBT) && cpu_feature_enabled(X86_FEATURE_IBT) &&
	    offset == 0) {
		ko_say(f, "error: %pS starts with ENDBR under IBT; cut after it\n", (void *)addr);
		return -EBUSY;
	}
	for (ip = start; ip < end; ip += insn.length) {
		unsigned int n = min_t(unsigned long, MAX_INSN_SIZE, end - ip);
		bool rel8;

		ko_read_orig(ip, buf, n);
		if (ko.insn_decode(&insn, buf, n, INSN_MODE_64) < 0 || !insn.length) {
			ko_say(f, "error: cannot decode the instruction at %pS; knockout will not cut this function\n",
			       (void *)ip);
			return -EINVAL;
		}
		if (ip == addr)
			at_addr = true;
		if (ip == addr + len)
			at_end = true;
		if (buf[0] == 0xcc && !prev_stop) {
			ko_say(f, "error: breakpoint at %pS (a kprobe?); remove it first\n", (void *)ip);
			return -EBUSY;
		}
		if (ip >= addr && ip < addr + len) {
			if (buf[0] == 0xcc) {
				ko_say(f, "error: INT3 at %pS inside the range; choose another instruction\n",
				       (void *)ip);
				return -EBUSY;
			}
			if (ko.search_exception_tables(ip)) {
				ko_say(f, "error: %pS has an exception-table fixup and cannot be displaced; choose another instruction\n",
				       (void *)ip);
				return -EBUSY;
			}
		}
		if (ko_x86_indirect_jump(&insn)) {
			ko_say(f, "error: %pS is an indirect jump (jump table?); knockout cannot prove no jump lands inside the range\n",
			       (void *)ip);
			return -EBUSY;
		}
		if (ko_x86_rel_branch(&insn, &rel8)) {
			unsigned long target = ip + insn.length + (long)insn.immediate.value;

			if (target > addr && target < addr + len) {
				ko_say(f, "error: the branch at %pS jumps into %pS..+%u; choose a range no branch enters\n",
				       (void *)ip, (void *)addr, len);
				return -EBUSY;
			}
		}
		prev_stop = ko_x86_no_fallthrough(&insn);
	}
	if (!at_addr) {
		ko_say(f, "error: %lx is not an instruction boundary of %pS\n", addr, (void *)start);
		return -EINVAL;
	}
	if (!at_end && addr + len != end) {
		ko_say(f, "error: %lx+%u does not end on an instruction boundary\n", addr, len);
		return -EINVAL;
	}
	return 0;
}

static bool ko_fits_s32(long v)
{
	return v >= S32_MIN && v <= S32_MAX;
}

/* NEW (written for addr) re-aimed to run at stub, followed by jmp back. */
static int ko_x86_build_stub(struct ko_file *f, const u8 *new, unsigned int len,
			     unsigned long addr, unsigned long stub, u8 *out)
{
	unsigned int off;
	struct insn insn;
	long disp;

	memset(out, 0xcc, KO_SLOT_SIZE);
	memcpy(out, new, len);
	for (off = 0; off < len; off += insn.length) {
		bool rel8;

		if (ko.insn_decode(&insn, new + off, len - off, INSN_MODE_64) < 0 ||
		    !insn.length) {
			ko_say(f, "error: NEW does not decode as whole instructions at +%u\n", off);
			return -EINVAL;
		}
		if (insn.opcode.bytes[0] == 0xe8) {
			ko_say(f, "error: NEW has a CALL at +%u; a call may not be displaced into a stub\n", off);
			return -EINVAL;
		}
		if (insn.opcode.bytes[0] == 0xcc || insn.opcode.bytes[0] == 0xcd ||
		    (insn.opcode.bytes[0] == 0x0f && insn.opcode.bytes[1] == 0x0b)) {
			ko_say(f, "error: NEW has a trap instruction (INT3/INT n/UD2) at +%u\n", off);
			return -EINVAL;
		}
		if (ko_x86_rel_branch(&insn, &rel8)) {
			unsigned long target = addr + off + insn.length + (long)insn.immediate.value;

			if (rel8) {
				if (target < addr || target > addr + len) {
					ko_say(f, "error: NEW has a short branch at +%u leaving the range; use a rel32 branch\n",
					       off);
					return -EINVAL;
				}
				continue;	/* position independent inside the stub */
			}
			disp = (long)target - (long)(stub + off + insn.length);
			if (!ko_fits_s32(disp)) {
				ko_say(f, "error: branch at +%u cannot reach its target from the stub\n", off);
				return -ERANGE;
			}
			put_unaligned_le32((s32)disp, out + off + insn_offset_immediate(&insn));
		} else if (ko_x86_rip_relative(&insn)) {
			disp = (long)insn.displacement.value + (long)addr - (long)stub;
			if (!ko_fits_s32(disp)) {
				ko_say(f, "error: RIP-relative operand at +%u cannot reach its target from the stub\n",
				       off);
				return -ERANGE;
			}
			put_unaligned_le32((s32)disp, out + off + insn_offset_displacement(&insn));
		}
	}
	disp = (long)(addr + len) - (long)(stub + len + KO_JMP_LEN);
	if (!ko_fits_s32(disp)) {
		ko_say(f, "error: the stub cannot jump back to %lx\n", addr + len);
		return -ERANGE;
	}
	out[len] = 0xe9;
	put_unaligned_le32((s32)disp, out + len + 1);
	return 0;
}

static int ko_alloc_slot(void)
{
	int i;

	for (i = 0; i < KO_NR_SLOTS; i++) {
		if (ko_slot_state[i] == KO_SLOT_FREE) {
			ko_slot_state[i] = KO_SLOT_USED;
			return i;
		}
	}
	return -1;
}

static int ko_arch_apply(struct ko_file *f, struct ko_cut *c)
{
	u8 stub_buf[KO_SLOT_SIZE];
	unsigned long stub;
	long disp;
	int ret;

	ret = ko_x86_check_function(f, c->addr, c->len);
	if (ret)
		return ret;
	c->slot = ko_alloc_slot();
	if (c->slot < 0) {
		ko_say(f, "error: all %d stub slots are in use or cooling down; revert a cut or retry in a second\n",
		       KO_NR_SLOTS);
		return -EAGAIN;
	}
	stub = (unsigned long)knockout_stub_area + c->slot * KO_SLOT_SIZE;
	ret = ko_x86_build_stub(f, c->new, c->len, c->addr, stub, stub_buf);
	if (ret)
		goto free_slot;
	disp = (long)stub - (long)(c->addr + KO_JMP_LEN);
	if (!ko_fits_s32(disp)) {
		ko_say(f, "error: the stub is out of rel32 reach of %lx\n", c->addr);
		ret = -ERANGE;
		goto free_slot;
	}
	/* nothing can reach the stub yet: a plain text_poke() is enough */
	ko.text_poke((void *)stub, stub_buf, KO_SLOT_SIZE);
	if (memcmp((void *)stub, stub_buf, KO_SLOT_SIZE)) {
		ko_say(f, "error: stub write did not take\n");
		ret = -EIO;
		goto free_slot;
	}
	c->site[0] = 0xe9;
	put_unaligned_le32((s32)disp, c->site + 1);
	c->site_len = KO_JMP_LEN;
	ko.text_poke_bp((void *)c->addr, c->site, KO_JMP_LEN, NULL);
	return 0;

free_slot:
	ko_slot_state[c->slot] = KO_SLOT_FREE;
	c->slot = -1;
	return ret;
}

static void ko_arch_revert(struct ko_cut *c)
{
	/* a CPU on the INT3 meanwhile takes the cut path: still correct */
	ko.text_poke_bp((void *)c->addr, c->old, KO_JMP_LEN, c->site);
	ko_slot_state[c->slot] = KO_SLOT_COOLING;
	ko_slot_gen[c->slot] = ko_gen;
	c->slot = -1;
}

static const char *ko_mechanism(void)
{
	return "text_poke_bp+stub";
}

/*
 * TEST ONLY (poke): write 5 raw bytes at addr with text_poke_bp().  Whatever
 * they are, a CPU that meets the INT3 meanwhile is emulated as the
 * instruction that was there, so that one must be something text_poke_bp()
 * can emulate: a 5-byte JMP or CALL rel32, or NOP5.  Caller holds text_mutex.
 */
static int ko_arch_poke(struct ko_file *f, unsigned long addr, const u8 *bytes,
			unsigned int len)
{
	static const u8 nop5[KO_JMP_LEN] = { 0x0f, 0x1f, 0x44, 0x00, 0x00 };
	u8 cur[KO_JMP_LEN];
	struct insn insn;

	if (len != KO_JMP_LEN) {
		ko_say(f, "error: poke writes exactly %d bytes on x86_64\n", KO_JMP_LEN);
		return -EINVAL;
	}
	memcpy(cur, (void *)addr, KO_JMP_LEN);
	if (memcmp(cur, nop5, KO_JMP_LEN) &&
	    (ko.insn_decode(&insn, cur, KO_JMP_LEN, INSN_MODE_64) < 0 ||
	     insn.length != KO_JMP_LEN ||
	     (insn.opcode.bytes[0] != 0xe8 && insn.opcode.bytes[0] != 0xe9))) {
		ko_say(f, "error: poke needs a jmp/call rel32 or NOP5 at %lx to emulate meanwhile\n",
		       addr);
		return -EINVAL;
	}
	ko.text_poke_bp((void *)addr, bytes, KO_JMP_LEN, cur);
	return 0;
}

#endif /* CONFIG_X86_64 */

#ifdef CONFIG_ARM64

static int ko_arm64_write(unsigned long addr, const u8 *bytes, unsigned int len)
{
	void *addrs[KO_MAX_LEN / AARCH64_INSN_SIZE];
	u32 insns[KO_MAX_LEN / AARCH64_INSN_SIZE];
	unsigned int i, n = len / AARCH64_INSN_SIZE;

	for (i = 0; i < n; i++) {
		addrs[i] = (void *)(addr + i * AARCH64_INSN_SIZE);
		insns[i] = get_unaligned_le32(bytes + i * AARCH64_INSN_SIZE);
	}
	return ko.aarch64_insn_patch_text(addrs, insns, n);
}

static int ko_arch_apply(struct ko_file *f, struct ko_cut *c)
{
	int ret;

	if (c->addr % AARCH64_INSN_SIZE || c->len % AARCH64_INSN_SIZE) {
		ko_say(f, "error: arm64 cuts are whole 4-byte aligned words\n");
		return -EINVAL;
	}
	c->slot = -1;
	memcpy(c->site, c->new, c->len);
	c->site_len = c->len;
	ret = ko_arm64_write(c->addr, c->new, c->len);
	if (ret)
		ko_say(f, "error: aarch64_insn_patch_text failed (%d)\n", ret);
	return ret;
}

static void ko_arch_revert(struct ko_cut *c)
{
	int ret = ko_arm64_write(c->addr, c->old, c->len);

	if (ret)
		pr_err("revert of cut %u: aarch64_insn_patch_text failed (%d)\n", c->id, ret);
}

static const char *ko_mechanism(void)
{
	return "aarch64_insn_patch_text";
}

/* TEST ONLY (poke): whole words, through aarch64_insn_patch_text(). */
static int ko_arch_poke(struct ko_file *f, unsigned long addr, const u8 *bytes,
			unsigned int len)
{
	int ret;

	if (addr % AARCH64_INSN_SIZE || len % AARCH64_INSN_SIZE) {
		ko_say(f, "error: arm64 pokes are whole 4-byte aligned words\n");
		return -EINVAL;
	}
	ret = ko_arm64_write(addr, bytes, len);
	if (ret)
		ko_say(f, "error: aarch64_insn_patch_text failed (%d)\n", ret);
	return ret;
}

#endif /* CONFIG_ARM64 */

/* ---------------------------------------------------------------------- */
/* kprobe cuts: the same override through the kprobe machinery.          */

struct ko_kprobe {
	struct kprobe kp;
	bool ret;
	unsigned long value;
};

#ifdef CONFIG_X86_64
/* where a "return" kprobe sends the CPU: a bare return to the caller */
static noinline notrace void ko_just_return(void)
{
	barrier();
}
#endif

/*
 * At a function's entry (the only place a "return" kprobe is accepted),
 * set the return register and resume at a bare return: the override
 * fail_function and bpf_override_return() make.
 */
static int ko_kprobe_pre(struct kprobe *p, struct pt_regs *regs)
{
	struct ko_kprobe *k = container_of(p, struct ko_kprobe, kp);

	if (!READ_ONCE(k->ret))
		return 0;
#ifdef CONFIG_X86_64
	regs->ax = k->value;
	instruction_pointer_set(regs, (unsigned long)ko_just_return);
#else
	regs->regs[0] = k->value;
	instruction_pointer_set(regs, procedure_link_pointer(regs));
#endif
	return 1;
}
NOKPROBE_SYMBOL(ko_kprobe_pre);

/* ---------------------------------------------------------------------- */
/* Slot recycling and the dead-man switch.                                */

static bool ko_have_cooling(void)
{
	int i;

	for (i = 0; i < KO_NR_SLOTS; i++)
		if (ko_slot_state[i] == KO_SLOT_COOLING)
			return true;
	return false;
}

/* Wait until no CPU or preempted task can still be inside a reverted stub. */
static void ko_recycle_slots(void)
{
	u64 gen;
	int i;

	mutex_lock(&ko_lock);
	gen = ko_gen++;
	mutex_unlock(&ko_lock);
	synchronize_rcu();
	synchronize_rcu_tasks();
	mutex_lock(&ko_lock);
	for (i = 0; i < KO_NR_SLOTS; i++)
		if (ko_slot_state[i] == KO_SLOT_COOLING && ko_slot_gen[i] <= gen)
			ko_slot_state[i] = KO_SLOT_FREE;
	mutex_unlock(&ko_lock);
}

static void ko_grace_fn(struct work_struct *work)
{
	bool again;

	ko_recycle_slots();
	mutex_lock(&ko_lock);
	again = ko_have_cooling();
	mutex_unlock(&ko_lock);
	if (again)
		schedule_work(&ko_grace);
}

/* Revert one cut; caller holds ko_lock.  Returns 0, or -EIO if stuck. */
static int ko_revert_locked(struct ko_cut *c, const char *why)
{
	int ret = 0;

	if (c->stuck)
		return -EIO;
	if (c->kp) {
		unregister_kprobe(c->kp);
		kfree(container_of(c->kp, struct ko_kprobe, kp));
		pr_info("revert %u at %pS (%s, kprobe)\n", c->id, (void *)c->addr, why);
		list_del(&c->node);
		ko_release_text(c->owner);
		kfree(c);
		return 0;
	}
	mutex_lock(ko.text_mutex);
	if (memcmp((void *)c->addr, c->site, c->site_len)) {
		c->stuck = true;
		ret = -EIO;
	} else {
		ko_arch_revert(c);
		if (memcmp((void *)c->addr, c->old, c->len))
			ret = -EIO;
	}
	mutex_unlock(ko.text_mutex);
	if (ret) {
		c->stuck = true;
		if (!ko_pinned) {
			__module_get(THIS_MODULE);
			ko_pinned = true;
		}
		pr_err("cut %u at %pS: the bytes there changed under the cut; leaving them alone, module pinned\n",
		       c->id, (void *)c->addr);
		return ret;
	}
	pr_info("revert %u at %pS (%s)\n", c->id, (void *)c->addr, why);
	list_del(&c->node);
	ko_release_text(c->owner);
	kfree(c);
	schedule_work(&ko_grace);
	return 0;
}

static unsigned long ko_reaper_at;	/* when the pending reaper runs (ko_lock) */

/*
 * Run the reaper at the next deadline, and at least once a second (it also
 * re-checks every cut's bytes).  A pending run is only ever brought
 * forward: renewals every few hundred ms must not keep pushing it back, or
 * the byte check would never run while a heartbeat lives.
 */
static void ko_arm_reaper_locked(void)
{
	unsigned long next = jiffies + HZ;
	struct ko_cut *c;
	bool any = false;

	list_for_each_entry(c, &ko_cuts, node) {
		if (c->stuck)
			continue;
		any = true;
		if (time_before(c->deadline, next))
			next = c->deadline;
	}
	if (!any)
		return;
	if (delayed_work_pending(&ko_reaper) && time_before_eq(ko_reaper_at, next))
		return;
	ko_reaper_at = next;
	mod_delayed_work(system_wq, &ko_reaper, time_after(next, jiffies) ? next - jiffies : 0);
}

static void ko_reaper_fn(struct work_struct *work)
{
	struct ko_cut *c, *tmp;

	mutex_lock(&ko_lock);
	list_for_each_entry_safe(c, tmp, &ko_cuts, node) {
		if (c->stuck)
			continue;
		if (time_after_eq(jiffies, c->deadline)) {
			ko_revert_locked(c, "TTL expired");
		} else if (!c->kp && memcmp((void *)c->addr, c->site, c->site_len)) {
			c->stuck = true;
			if (!ko_pinned) {
				__module_get(THIS_MODULE);
				ko_pinned = true;
			}
			pr_err("cut %u at %pS: the bytes there changed under the cut; module pinned\n",
			       c->id, (void *)c->addr);
		}
	}
	ko_arm_reaper_locked();
	mutex_unlock(&ko_lock);
}

/* ---------------------------------------------------------------------- */
/* Strict parsing.                                                        */

static int ko_parse_hex_ulong(const char *s, unsigned long *out)
{
	unsigned long v = 0;
	int n = 0;

	if (s[0] == '0' && s[1] == 'x')
		s += 2;
	for (; *s; s++, n++) {
		int d = hex_to_bin(*s);

		if (d < 0 || n >= (int)(2 * sizeof(unsigned long)))
			return -EINVAL;
		v = (v << 4) | d;
	}
	if (!n)
		return -EINVAL;
	*out = v;
	return 0;
}

static int ko_parse_u32(const char *s, u32 max, u32 *out)
{
	u64 v = 0;
	int n = 0;

	for (; *s; s++, n++) {
		if (!isdigit(*s) || n >= 10)
			return -EINVAL;
		v = v * 10 + (*s - '0');
	}
	if (!n || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int ko_parse_bytes(const char *s, u8 *out, unsigned int *len)
{
	size_t n = strlen(s);

	if (!n || n % 2 || n > 2 * KO_MAX_LEN)
		return -EINVAL;
	if (hex2bin(out, s, n / 2))
		return -EINVAL;
	*len = n / 2;
	return 0;
}

/* Split on single spaces; every byte must be printable ASCII. */
static int ko_split(char *buf, char **argv, int max)
{
	int argc = 0;
	char *p = buf;

	if (!*p)
		return -EINVAL;
	for (;;) {
		char *sp = strchr(p, ' ');

		if (argc == max || (sp == p) || !*p)
			return -EINVAL;
		argv[argc++] = p;
		if (!sp)
			break;
		*sp = '\0';
		p = sp + 1;
	}
	return argc;
}

/* ---------------------------------------------------------------------- */
/* Commands.                                                              */

static int ko_cmd_read(struct ko_file *f, char **argv, int argc)
{
	struct module *owner;
	unsigned long addr;
	u8 *bytes;
	u32 len;
	int ret;

	if (argc != 3 || ko_parse_hex_ulong(argv[1], &addr) ||
	    ko_parse_u32(argv[2], KO_MAX_READ, &len) || !len) {
		ko_say(f, "error: usage: read ADDR LEN (LEN 1..%d)\n", KO_MAX_READ);
		return -EINVAL;
	}
	if (security_locked_down(LOCKDOWN_DBG_READ_KERNEL)) {
		ko_say(f, "error: the kernel is locked down (confidentiality); reading text is refused\n");
		return -EPERM;
	}
	if (!(ko_in_own_text(addr) && ko_in_own_text(addr + len - 1))) {
		ret = ko_claim_text(f, addr, len, &owner);
		if (ret)
			return ret;
		ko_release_text(owner);
	}
	bytes = kmalloc(len, GFP_KERNEL);
	if (!bytes)
		return -ENOMEM;
	if (copy_from_kernel_nofault(bytes, (void *)addr, len)) {
		kfree(bytes);
		ko_say(f, "error: %lx is not readable\n", addr);
		return -EFAULT;
	}
	bin2hex(f->out, bytes, len);
	f->out[2 * len] = '\n';
	f->len = 2 * len + 1;
	f->answered = true;
	kfree(bytes);
	return 0;
}

static int ko_cmd_cut(struct ko_file *f, char **argv, int argc)
{
	struct ko_cut *c;
	unsigned int nlen;
	u32 ttl;
	int ret;

	c = kzalloc(sizeof(*c), GFP_KERNEL);
	if (!c)
		return -ENOMEM;
	c->slot = -1;
	if (argc != 5 || ko_parse_hex_ulong(argv[1], &c->addr) ||
	    ko_parse_bytes(argv[2], c->old, &c->len) ||
	    ko_parse_bytes(argv[3], c->new, &nlen) || nlen != c->len ||
	    ko_parse_u32(argv[4], KO_MAX_TTL_MS, &ttl) || !ttl) {
		ko_say(f, "error: usage: cut ADDR OLDHEX NEWHEX TTL_MS (OLD and NEW the same length, at most %d bytes; TTL 1..%u ms)\n",
		       KO_MAX_LEN, KO_MAX_TTL_MS);
		ret = -EINVAL;
		goto free;
	}
	if (c->len < KO_MIN_LEN) {
		ko_say(f, "error: a cut spans at least %d bytes here (the branch to the stub); widen it to whole instructions\n",
		       KO_MIN_LEN);
		ret = -EINVAL;
		goto free;
	}
	if (security_locked_down(LOCKDOWN_DBG_WRITE_KERNEL)) {
		ko_say(f, "error: the kernel is locked down; it refuses writes to its text (boot with lockdown=none to cut)\n");
		ret = -EPERM;
		goto free;
	}
	ret = ko_claim_text(f, c->addr, c->len, &c->owner);
	if (ret)
		goto free;
	ret = ko_check_reserved(f, c->addr, c->len);
	if (ret)
		goto release;

	mutex_lock(&ko_lock);
	if (ko_find_overlap(c->addr, c->len)) {
		ko_say(f, "error: %pS overlaps an active cut; revert that first\n", (void *)c->addr);
		ret = -EBUSY;
		goto unlock;
	}
	mutex_lock(ko.text_mutex);
	if (memcmp((void *)c->addr, c->old, c->len)) {
		mutex_unlock(ko.text_mutex);
		ko_say(f, "error: the bytes at %pS are not OLD; read them again and re-plan\n",
		       (void *)c->addr);
		ret = -ESTALE;
		goto unlock;
	}
	ret = ko_arch_apply(f, c);
	if (!ret && (memcmp((void *)c->addr, c->site, c->site_len) ||
		     memcmp((void *)(c->addr + c->site_len), c->old + c->site_len,
			    c->len - c->site_len))) {
		/* should not happen: put the original back and say so */
		ko_arch_revert(c);
		ko_say(f, "error: read-back after the write differs; reverted\n");
		ret = -EIO;
	}
	mutex_unlock(ko.text_mutex);
	if (ret)
		goto unlock;
	c->id = ko_next_id++;
	c->deadline = jiffies + msecs_to_jiffies(ttl);
	list_add_tail(&c->node, &ko_cuts);
	ko_arm_reaper_locked();
	pr_info("cut %u at %pS len %u ttl %u ms (%s)\n", c->id, (void *)c->addr,
		c->len, ttl, ko_mechanism());
	ko_say(f, "id=%u\n", c->id);
	mutex_unlock(&ko_lock);
	return 0;

unlock:
	mutex_unlock(&ko_lock);
	if (ret == -EAGAIN)
		schedule_work(&ko_grace);
release:
	ko_release_text(c->owner);
free:
	kfree(c);
	return ret;
}

/*
 * kprobe ADDR pass|ret=HEX TTL_MS: a kprobe at ADDR that only passes, or
 * (at a function's entry only) returns HEX.  Same TTL, listing and revert
 * as a text cut; used to compare the two mechanisms' cost.
 */
static int ko_cmd_kprobe(struct ko_file *f, char **argv, int argc)
{
	unsigned long size, offset;
	struct ko_kprobe *k;
	struct ko_cut *c;
	u32 ttl;
	int ret;

	c = kzalloc(sizeof(*c), GFP_KERNEL);
	k = kzalloc(sizeof(*k), GFP_KERNEL);
	if (!c || !k) {
		ret = -ENOMEM;
		goto free;
	}
	c->slot = -1;
	if (argc != 4 || ko_parse_hex_ulong(argv[1], &c->addr) ||
	    (strcmp(argv[2], "pass") &&
	     (strncmp(argv[2], "ret=", 4) || ko_parse_hex_ulong(argv[2] + 4, &k->value))) ||
	    ko_parse_u32(argv[3], KO_MAX_TTL_MS, &ttl) || !ttl) {
		ko_say(f, "error: usage: kprobe ADDR pass|ret=HEX TTL_MS\n");
		ret = -EINVAL;
		goto free;
	}
	k->ret = argv[2][0] == 'r';
	if (security_locked_down(LOCKDOWN_DBG_WRITE_KERNEL)) {
		ko_say(f, "error: the kernel is locked down; it refuses writes to its text\n");
		ret = -EPERM;
		goto free;
	}
	ret = ko_claim_text(f, c->addr, 1, &c->owner);
	if (ret)
		goto free;
	if (k->ret && (!ko.kallsyms_lookup_size_offset(c->addr, &size, &offset) || offset)) {
		ko_say(f, "error: a returning kprobe goes at a function's entry\n");
		ret = -EINVAL;
		goto release;
	}
	k->kp.addr = (kprobe_opcode_t *)c->addr;
	k->kp.pre_handler = ko_kprobe_pre;
	mutex_lock(&ko_lock);
	if (ko_find_overlap(c->addr, 1)) {
		ko_say(f, "error: %pS overlaps an active cut; revert that first\n", (void *)c->addr);
		ret = -EBUSY;
		goto unlock;
	}
	ret = register_kprobe(&k->kp);
	if (ret) {
		ko_say(f, "error: register_kprobe at %pS failed (%d)\n", (void *)c->addr, ret);
		goto unlock;
	}
	c->kp = &k->kp;
	c->len = 1;
	c->kp_return = k->ret;
	c->kp_value = k->value;
	c->id = ko_next_id++;
	c->deadline = jiffies + msecs_to_jiffies(ttl);
	list_add_tail(&c->node, &ko_cuts);
	ko_arm_reaper_locked();
	pr_info("cut %u at %pS ttl %u ms (kprobe, %s)\n", c->id, (void *)c->addr, ttl,
		k->ret ? "return" : "pass");
	ko_say(f, "id=%u\n", c->id);
	mutex_unlock(&ko_lock);
	return 0;

unlock:
	mutex_unlock(&ko_lock);
release:
	ko_release_text(c->owner);
free:
	kfree(k);
	kfree(c);
	return ret;
}

/*
 * TEST ONLY: poke ADDR HEX.  Raw bytes over kernel or module text, whatever
 * cuts are there (that is the point: it makes a cut stuck).  -EPERM unless
 * the module was loaded with allow_test_poke=1.
 */
static int ko_cmd_poke(struct ko_file *f, char **argv, int argc)
{
	u8 bytes[KO_MAX_LEN];
	struct module *owner;
	unsigned long addr;
	unsigned int len;
	int ret;

	if (!allow_test_poke) {
		ko_say(f, "error: poke is a test-only command; it works only when the module is loaded with allow_test_poke=1\n");
		return -EPERM;
	}
	if (argc != 3 || ko_parse_hex_ulong(argv[1], &addr) ||
	    ko_parse_bytes(argv[2], bytes, &len)) {
		ko_say(f, "error: usage: poke ADDR HEX (at most %d bytes)\n", KO_MAX_LEN);
		return -EINVAL;
	}
	if (security_locked_down(LOCKDOWN_DBG_WRITE_KERNEL)) {
		ko_say(f, "error: the kernel is locked down; it refuses writes to its text\n");
		return -EPERM;
	}
	ret = ko_claim_text(f, addr, len, &owner);
	if (ret)
		return ret;
	mutex_lock(&ko_lock);
	mutex_lock(ko.text_mutex);
	ret = ko_arch_poke(f, addr, bytes, len);
	if (!ret && memcmp((void *)addr, bytes, len)) {
		ko_say(f, "error: read-back after the poke differs\n");
		ret = -EIO;
	}
	mutex_unlock(ko.text_mutex);
	mutex_unlock(&ko_lock);
	ko_release_text(owner);
	if (!ret) {
		pr_warn("TEST poke of %u bytes at %pS\n", len, (void *)addr);
		ko_say(f, "poked=%u\n", len);
	}
	return ret;
}

static int ko_cmd_renew(struct ko_file *f, char **argv, int argc)
{
	struct ko_cut *c;
	u32 id, ttl;
	int ret = 0;

	if (argc != 3 || ko_parse_u32(argv[1], U32_MAX, &id) ||
	    ko_parse_u32(argv[2], KO_MAX_TTL_MS, &ttl) || !ttl) {
		ko_say(f, "error: usage: renew ID TTL_MS\n");
		return -EINVAL;
	}
	mutex_lock(&ko_lock);
	c = ko_find_id(id);
	if (!c) {
		ko_say(f, "error: no active cut %u (expired or reverted)\n", id);
		ret = -ENOENT;
	} else if (c->stuck) {
		ko_say(f, "error: cut %u is stuck: its bytes changed under it\n", id);
		ret = -EIO;
	} else {
		c->deadline = jiffies + msecs_to_jiffies(ttl);
		ko_arm_reaper_locked();
		ko_say(f, "id=%u\n", id);
	}
	mutex_unlock(&ko_lock);
	return ret;
}

static int ko_cmd_revert(struct ko_file *f, char **argv, int argc)
{
	struct ko_cut *c, *tmp;
	int ret = 0, n = 0;
	u32 id;

	if (argc != 2 || (strcmp(argv[1], "all") && ko_parse_u32(argv[1], U32_MAX, &id))) {
		ko_say(f, "error: usage: revert ID | revert all\n");
		return -EINVAL;
	}
	mutex_lock(&ko_lock);
	if (!strcmp(argv[1], "all")) {
		list_for_each_entry_safe(c, tmp, &ko_cuts, node) {
			if (ko_revert_locked(c, "revert all"))
				ret = -EIO;
			else
				n++;
		}
		if (ret)
			ko_say(f, "error: some cuts are stuck (their bytes changed); see dmesg\n");
		else
			ko_say(f, "reverted=%d\n", n);
	} else {
		c = ko_find_id(id);
		if (!c) {
			ko_say(f, "error: no active cut %u (expired or reverted)\n", id);
			ret = -ENOENT;
		} else {
			ret = ko_revert_locked(c, "revert");
			if (ret)
				ko_say(f, "error: cut %u is stuck: its bytes changed under it; see dmesg\n", id);
			else
				ko_say(f, "reverted=1\n");
		}
	}
	mutex_unlock(&ko_lock);
	return ret;
}

static void ko_list(struct ko_file *f)
{
	struct ko_cut *c;
	size_t n = 0;

	mutex_lock(&ko_lock);
	list_for_each_entry(c, &ko_cuts, node) {
		long left = (long)(c->deadline - jiffies);

		if (n + 4 * KO_MAX_LEN + 200 > sizeof(f->out))
			break;
		n += scnprintf(f->out + n, sizeof(f->out) - n,
			       "id=%u addr=%lx len=%u ttl_ms=%ld state=%s mech=%s old=%*phN new=%*phN sym=%pS\n",
			       c->id, c->addr, c->len,
			       c->stuck ? -1L : (long)jiffies_to_msecs(max(left, 0L)),
			       c->stuck ? "stuck" : "active", c->kp ? "kprobe" : ko_mechanism(),
			       (int)c->len, c->old, (int)c->len, c->new, (void *)c->addr);
	}
	mutex_unlock(&ko_lock);
	f->len = n;
	f->answered = true;
}

/* ---------------------------------------------------------------------- */
/* The control file.                                                      */

static int ko_open(struct inode *inode, struct file *file)
{
	struct ko_file *f;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f)
		return -ENOMEM;
	mutex_init(&f->lock);
	file->private_data = f;
	return 0;
}

static int ko_release(struct inode *inode, struct file *file)
{
	kfree(file->private_data);
	return 0;
}

static ssize_t ko_read(struct file *file, char __user *buf, size_t count, loff_t *ppos)
{
	struct ko_file *f = file->private_data;
	ssize_t ret;

	mutex_lock(&f->lock);
	if (!f->answered)
		ko_list(f);
	ret = simple_read_from_buffer(buf, count, ppos, f->out, f->len);
	mutex_unlock(&f->lock);
	return ret;
}

static ssize_t ko_write(struct file *file, const char __user *ubuf, size_t count, loff_t *ppos)
{
	struct ko_file *f = file->private_data;
	char buf[KO_CMD_MAX + 1];
	char *argv[6];
	size_t i, n = count;
	int argc, ret;

	mutex_lock(&f->lock);
	f->len = 0;
	f->answered = true;
	ret = -EINVAL;
	if (!count || count > KO_CMD_MAX) {
		ko_say(f, "error: one command per write, at most %d bytes\n", KO_CMD_MAX);
		goto out;
	}
	if (copy_from_user(buf, ubuf, count)) {
		ret = -EFAULT;
		goto out;
	}
	if (buf[n - 1] == '\n')
		n--;
	buf[n] = '\0';
	for (i = 0; i < n; i++) {
		if (buf[i] < 0x21 && buf[i] != ' ')
			break;
		if ((unsigned char)buf[i] > 0x7e)
			break;
	}
	if (i != n) {
		ko_say(f, "error: commands are one line of printable ASCII\n");
		goto out;
	}
	argc = ko_split(buf, argv, ARRAY_SIZE(argv));
	if (argc < 1) {
		ko_say(f, "error: commands: read, cut, renew, revert, list (single spaces)\n");
		goto out;
	}
	if (!strcmp(argv[0], "read"))
		ret = ko_cmd_read(f, argv, argc);
	else if (!strcmp(argv[0], "cut"))
		ret = ko_cmd_cut(f, argv, argc);
	else if (!strcmp(argv[0], "kprobe"))
		ret = ko_cmd_kprobe(f, argv, argc);
	else if (!strcmp(argv[0], "renew"))
		ret = ko_cmd_renew(f, argv, argc);
	else if (!strcmp(argv[0], "poke"))
		ret = ko_cmd_poke(f, argv, argc);
	else if (!strcmp(argv[0], "revert"))
		ret = ko_cmd_revert(f, argv, argc);
	else if (!strcmp(argv[0], "list") && argc == 1) {
		ko_list(f);
		ret = 0;
	} else {
		ko_say(f, "error: unknown command; commands: read, cut, renew, revert, list\n");
	}
out:
	if (ret && !f->len)
		ko_say(f, "error: %d\n", ret);
	mutex_unlock(&f->lock);
	return ret ? ret : count;
}

static const struct proc_ops ko_proc_ops = {
	.proc_open = ko_open,
	.proc_release = ko_release,
	.proc_read = ko_read,
	.proc_write = ko_write,
	.proc_lseek = default_llseek,
};

static struct proc_dir_entry *ko_proc;

static int __init ko_init(void)
{
	int ret;

	if (security_locked_down(LOCKDOWN_DBG_WRITE_KERNEL)) {
		pr_err("the kernel is locked down: knockout cannot write kernel text (boot with lockdown=none)\n");
		return -EPERM;
	}
	ret = ko_resolve();
	if (ret)
		return ret;
	ko_proc = proc_create("knockout", 0600, NULL, &ko_proc_ops);
	if (!ko_proc)
		return -ENOMEM;
	pr_info("ready: /proc/knockout (%s)\n", ko_mechanism());
	return 0;
}

static void __exit ko_exit(void)
{
	struct ko_cut *c, *tmp;

	proc_remove(ko_proc);
	cancel_delayed_work_sync(&ko_reaper);
	mutex_lock(&ko_lock);
	list_for_each_entry_safe(c, tmp, &ko_cuts, node)
		ko_revert_locked(c, "module unload");
	mutex_unlock(&ko_lock);
	cancel_work_sync(&ko_grace);
	/* no task may still run in, or be preempted in, a stub */
	synchronize_rcu();
	synchronize_rcu_tasks();
	pr_info("unloaded\n");
}

module_init(ko_init);
module_exit(ko_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("knockout: cut code out of the running kernel and put it back");
