// SPDX-License-Identifier: GPL-2.0
/*
 * knockout.c - cut code out of the running kernel, and put it back.
 *
 * One generic module driven through /proc/knockout (0600).  Opening it
 * needs CAP_SYS_ADMIN and CAP_SYS_MODULE or CAP_SYS_RAWIO; every write is
 * checked again against the opener's credentials (file->f_cred) and the
 * writer's.  One command per write(); the answer (or a one-line error
 * saying what to do) is read back from the same file descriptor at offset
 * 0.  Reading a fresh descriptor lists the active cuts.
 *
 *   read ADDR LEN                  -> hex bytes at ADDR (kernel/module text)
 *   cut ADDR OLDHEX NEWHEX TTL_MS  -> "id=N"
 *   renew ID TTL_MS
 *   revert ID
 *   revert all
 *   list                           -> one line per cut, see ko_list()
 *   kprobe ADDR pass|ret=HEX TTL_MS -> "id=N" (the kprobe way, to compare)
 *   poke ADDR HEX                  -> TEST ONLY, off unless allow_test_poke=1
 *
 * ADDR is hex (optional 0x), LEN/ID/TTL_MS decimal, OLDHEX/NEWHEX an even
 * number of hex digits of equal length.  Anything else is -EINVAL and
 * nothing is written.  A list line is "key=value" fields: id addr len
 * ttl_ms state (active|stuck) mech (text_poke_bp+stub | kprobe |
 * aarch64_insn_patch_text) protocol (bp | optprobe | kprobe | patch) phase
 * (int3 | jmp | kprobe | word) waited (1: the jmp went in after the
 * INT3 wait-out of step 2 below, 0 otherwise) stub (address, 0 when none)
 * unwind (no-orc: the stub has no ORC entry | kernel) refs (module
 * references this cut holds) old new, and sym last (%pS, may hold a space).
 *
 * How a cut is written (x86_64)
 * -----------------------------
 * The kernel's text_poke_bp() (smp_text_poke_single() from Linux 6.16)
 * replaces up to 5 bytes while other CPUs run them, but it *emulates* a
 * CPU that hits its INT3 meanwhile, and it only knows how to emulate INT3,
 * RET, CALL, JMP32, JMP8 and NOP (anything else is BUG()).  So a cut is
 * never copied in place: the replacement lives in a stub, and the site gets
 * one "jmp rel32 -> stub":
 *
 *   stub = NEW (rel32 branches and RIP-relative operands re-aimed, since
 *          NEW is expressed as if it ran at ADDR) + "jmp ADDR+len(OLD)"
 *
 * A "jmp rel32" in NEW to a return thunk (__x86_return_thunk, or the
 * x86_return_thunk the mitigations chose) is a return, and is written the
 * way the kernel wrote its own returns at boot (apply_returns()): a jmp to
 * x86_return_thunk with X86_FEATURE_RETHUNK, else "ret" + INT3 padding.
 * From Linux 6.9 the default thunk warns when it runs at all after boot.
 *
 * Stubs live in executable memory this module allocates but does not own
 * (module_alloc() before Linux 6.10, execmem_alloc(EXECMEM_KPROBES) from
 * 6.10, made read-only then executable with set_memory_ro/x(), as kprobes
 * do for their instruction slots).  A stub is written with text_poke()
 * while nothing can reach it.  That memory is freed at unload only if no
 * cut is stuck; otherwise it is leaked deliberately, so that a jmp the
 * module could not take back never points into freed memory, even after
 * "rmmod -f".
 *
 * The site is written with the optprobe protocol (arch/x86/kernel/kprobes/
 * opt.c + kernel/kprobes.c), with this module's own INT3 handler, a die
 * notifier on DIE_INT3 (exc_int3() runs poke_int3_handler(), then kprobes,
 * then notify_die(DIE_INT3)), that sends any CPU which hits an INT3 this
 * module placed to that cut's stub, which is always a correct place to go:
 *
 *   1. INT3 on ADDR, text_poke_sync().  Every new entrant now runs the stub.
 *   2. If the range has an instruction boundary inside (ADDR, ADDR+5) a
 *      context may be stopped there (a task preempted under preempt=full,
 *      an interrupted context), and would resume in the middle of the
 *      rel32.  Then the cut stays in phase "int3" (it is already in effect)
 *      until synchronize_rcu() (interrupt and NMI handlers) and
 *      synchronize_rcu_tasks() (tasks preempted anywhere) have passed on
 *      the module's workqueue; a range whose first instruction is 5 bytes
 *      or longer goes on at once (protocol "bp", what text_poke_bp does).
 *   3. The tail ADDR+1..4, sync; the first byte (0xe9), sync: phase "jmp"
 *      (list says "waited=1" when step 2 waited, so a test can tell the
 *      wait happened even when it ended before anyone looked).
 *
 * Revert, from "jmp": INT3 on ADDR, sync, the original tail, sync, the
 * original first byte, sync (a jmp has no interior boundary: no wait);
 * from "int3": the original first byte, sync.  The stub slot is then
 * quarantined until synchronize_rcu() and synchronize_rcu_tasks() have
 * passed (a task may be preempted inside a stub, or a CPU be in the INT3
 * handler on its way there), and only then reused; its INT3 entry goes
 * with it.  Without CONFIG_TASKS_RCU (a kernel without preemption),
 * synchronize_rcu_tasks() is synchronize_rcu(): a task can then stop only
 * where it calls schedule(), i.e. after a call, and step 2's call rule
 * below covers that.
 *
 * What is checked before any byte is written: len(OLD) >= 5 and OLD must
 * be whole instructions.  Like can_optimize() in kprobes/opt.c, the
 * function is decoded from its start with the kernel's own decoder, as it
 * was before any of this module's cuts: ADDR and ADDR+len(OLD) must be
 * instruction boundaries; no relative branch of the function, nor of its
 * "<name>.cold" parts, may target the interior of the range; the function
 * may have no indirect jump (a jump table could target the interior: also
 * a jmp to a retpoline thunk); no exception-table fixup may land inside the
 * range and no displaced instruction may have an exception-table entry; no
 * static branch (jump label), enabled or not, may target inside it; no
 * call in OLD may end strictly inside (ADDR, ADDR+5) (a task sleeping in
 * the callee would return into the rel32: e.g. "call *%rax" + NOPs, the
 * kernel's rewrite of a retpoline call on an eIBRS CPU).  NEW may not
 * contain a CALL (direct or indirect: the return address would point into
 * a stub that is recycled later), UD2 (BUG/WARN are looked up by address),
 * INT3 or INT n, a short branch leaving the range, or a rel32 branch aimed
 * strictly inside it.  Ranges the kernel itself rewrites (ftrace, jump
 * labels, static calls, SMP alternatives) and the kprobe blacklist (entry
 * code, the INT3 handler, noinstr) are refused.
 *
 * Stubs have no ORC entries: an unwind that meets a task inside a stub
 * stops there with an error (a stack dump is unreliable for that frame;
 * livepatch's reliable-stack check refuses such a task).  list says
 * "unwind=no-orc".  Stub and site writes are reported to perf with
 * perf_event_text_poke() (Intel PT decoders need them), where the kernel
 * has it.
 *
 * arm64 writes NEW in place the way aarch64_insn_patch_text() does
 * (arch/arm64/kernel/patching.c: stop_machine_cpuslocked(), the last CPU in
 * writes with aarch64_insn_patch_text_nosync(), the others wait and isb()),
 * under cpus_read_lock(), which stop_machine_cpuslocked() asserts.  The word
 * is compared with the expected one inside the stop_machine callback, with
 * every other CPU held with interrupts off, so no other text writer (kprobes,
 * jump labels, ftrace) can come between the check and the write.  That is
 * also why text_mutex is not needed there: it is data, not exported, and
 * Debian's arm64 kernel has no CONFIG_KALLSYMS_ALL, so kallsyms cannot find
 * it (taken when found, as kprobes do).
 * A cut is one 32-bit word only: a task preempted between two words would
 * run a mix of old and new (e.g. "stp x29, x30, [sp, #-N]!" replaced by
 * "mov x0, #0; ret" returns with SP off by N).  Wider cuts wait for an arm64
 * branch-to-stub with the same wait-out protocol as x86 (not written yet).
 *
 * Dead-man switch: every cut has a TTL; unless renewed, the module reverts
 * it itself, from a dedicated WQ_UNBOUND | WQ_HIGHPRI | WQ_MEM_RECLAIM
 * workqueue (the per-CPU system_wq could starve behind the very load under
 * study).  The reaper also re-checks every cut's bytes at least once a
 * second.  A cut whose bytes changed under it (someone else wrote there)
 * is never overwritten: it is marked stuck.  Every live cut holds one
 * reference on this module, so a plain rmmod fails while any cut is in
 * place; "rmmod -f" (CONFIG_MODULE_FORCE_UNLOAD) runs the exit path, which
 * reverts every cut that is not stuck and leaks the stubs of stuck ones.
 * Writers take their locks killably.
 *
 * IBT: functions found through kallsyms may have had their ENDBR sealed by
 * objtool; an indirect call to one is a BUG() when the CPU enforces IBT.
 * Every function the module calls through a kallsyms pointer is checked
 * for ENDBR at load, and the load is refused (naming it, and ibt=off) if
 * one lacks it while IBT is on.
 *
 * TEST ONLY: "poke ADDR HEX" writes raw bytes over kernel or module text
 * through text_poke_bp(), with none of a cut's checks beyond "this is
 * text".  It exists so that tests/vm can change the bytes under a live cut
 * and watch the stuck path above happen for real.  It is refused with
 * -EPERM unless the module was loaded with allow_test_poke=1 (insmod
 * knockout.ko allow_test_poke=1), which nothing but the tests does and
 * which is only ever done in a throw-away guest.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/cpu.h>
#include <linux/ctype.h>
#include <linux/extable.h>
#include <linux/jiffies.h>
#include <linux/jump_label.h>
#include <linux/kallsyms.h>
#include <linux/kernel.h>
#include <linux/kprobes.h>
#include <linux/list.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/perf_event.h>
#include <linux/proc_fs.h>
#include <linux/rcupdate.h>
#include <linux/security.h>
#include <linux/slab.h>
#include <linux/stringify.h>
#include <linux/uaccess.h>
#include <linux/user_namespace.h>
#include <linux/version.h>
#include <linux/vmalloc.h>
#include <linux/workqueue.h>
/* Linux kernel commit 5f60d5f6bbc1 ("move asm/unaligned.h to linux/unaligned.h") (in v6.12) */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 12, 0)
#include <linux/unaligned.h>
#else
#include <asm/unaligned.h>
#endif
#ifdef CONFIG_X86
#include <linux/kdebug.h>
#include <asm/ibt.h>
#include <asm/insn.h>
#include <asm/text-patching.h>
/*
 * Linux kernel commit 12af2b83d0b1 ("mm: introduce execmem_alloc() and
 * execmem_free()") (in v6.10) replaced module_alloc() for kprobes' and
 * other executable allocations.
 */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 10, 0)
#include <linux/execmem.h>
#define KO_EXECMEM 1
#else
#define KO_EXECMEM 0
#endif
#endif

#ifdef CONFIG_ARM64
#include <linux/stop_machine.h>
#endif

#define KO_MAX_LEN	32	/* bytes a cut may span */
#define KO_MAX_READ	4096	/* bytes one "read" may return */
#define KO_MAX_TTL_MS	(24 * 3600 * 1000U)
#define KO_CMD_MAX	(16 + 2 * 2 * KO_MAX_LEN + 64)
#define KO_OUT_MAX	(2 * KO_MAX_READ + 64)
#define KO_LINE_MAX	(4 * KO_MAX_LEN + 320 + KSYM_SYMBOL_LEN)	/* one list line */
#define KO_SLOT_SIZE	64
#define KO_NR_SLOTS	512
#define KO_STUB_BYTES	(KO_NR_SLOTS * KO_SLOT_SIZE)
#define KO_JMP_LEN	5
#define KO_INT3		0xcc

#if defined(CONFIG_X86_64)
#define KO_MIN_LEN	KO_JMP_LEN
#define KO_TEXT_MUTEX	KO_DATA_REQUIRED
#elif defined(CONFIG_ARM64)
#define KO_MIN_LEN	AARCH64_INSN_SIZE
/*
 * text_mutex is a data symbol: kallsyms only has it with CONFIG_KALLSYMS_ALL,
 * which Debian's arm64 6.1 lacks.  The arm64 write checks the old word inside
 * stop_machine (ko_arm64_patch_cb()), which excludes every other writer.
 */
#define KO_TEXT_MUTEX	KO_DATA_OPTIONAL
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
	void (*perf_event_text_poke)(const void *addr, const void *old_bytes, size_t old_len,
				     const void *new_bytes, size_t new_len);
	struct mutex *text_mutex;
#ifdef CONFIG_X86_64
	void *(*text_poke)(void *addr, const void *opcode, size_t len);
	void (*text_poke_sync)(void);
	void (*text_poke_bp)(void *addr, const void *opcode, size_t len,
			     const void *emulate);
	int (*insn_decode)(struct insn *insn, const void *kaddr, int buf_len,
			   enum insn_mode m);
#if KO_EXECMEM
	void *(*execmem_alloc)(enum execmem_type type, size_t size);
	void (*execmem_free)(void *ptr);
#else
	void *(*module_alloc)(unsigned long size);
	void (*module_memfree)(void *region);
#endif
	struct vm_struct *(*find_vm_area)(const void *addr);
	int (*set_memory_ro)(unsigned long addr, int numpages);
	int (*set_memory_x)(unsigned long addr, int numpages);
	/* data: where the core kernel's tables are */
	const struct exception_table_entry *ex_start, *ex_stop;
	struct jump_entry *jump_start, *jump_stop;
	unsigned long thunk_start, thunk_end;	/* retpoline thunks: indirect jumps */
	unsigned long default_ret_thunk;	/* __x86_return_thunk, 0 if none */
	unsigned long *ret_thunk;		/* &x86_return_thunk, NULL if none */
#endif
#ifdef CONFIG_ARM64
	int (*aarch64_insn_patch_text_nosync)(void *addr, u32 insn);
	int (*stop_machine_cpuslocked)(cpu_stop_fn_t fn, void *data,
				       const struct cpumask *cpus);
#endif
};

static struct ko_syms ko;

/*
 * Under IBT (CONFIG_X86_KERNEL_IBT and a CPU that enforces it) an indirect
 * call must land on an ENDBR, and objtool seals the ENDBR of functions whose
 * address is never taken.  Is fn callable through a pointer here?
 */
static bool ko_callable(unsigned long fn)
{
#ifdef CONFIG_X86_64
	u32 head;

	if (!IS_ENABLED(CONFIG_X86_KERNEL_IBT) || !cpu_feature_enabled(X86_FEATURE_IBT))
		return true;
	if (copy_from_kernel_nofault(&head, (void *)fn, sizeof(head)))
		return false;
	return is_endbr(head);
#else
	return true;
#endif
}

/*
 * kallsyms_lookup_name() is not exported since Linux 5.7 (commit
 * 0bd476e6c671, "kallsyms: unexport kallsyms_lookup_name() and
 * kallsyms_on_each_symbol()").  A kprobe still resolves a name to an
 * address, so register one on kallsyms_lookup_name itself and read back
 * where it landed (past the ENDBR on an IBT kernel: kprobes skip it).
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
#ifdef CONFIG_X86_64
	if (IS_ENABLED(CONFIG_X86_KERNEL_IBT)) {
		u32 head;

		if (!copy_from_kernel_nofault(&head, (void *)(addr - 4), sizeof(head)) &&
		    is_endbr(head))
			addr -= 4;
	}
#endif
	if (!ko_callable(addr)) {
		pr_err("kallsyms_lookup_name has no ENDBR and the CPU enforces IBT: knockout cannot call it; boot with ibt=off to use knockout\n");
		return -EOPNOTSUPP;
	}
	ko.kallsyms_lookup_name = (void *)addr;
	return 0;
}

enum ko_need { KO_OPTIONAL, KO_REQUIRED, KO_DATA_OPTIONAL, KO_DATA_REQUIRED };

static int ko_lookup(void **field, const char *name, enum ko_need need)
{
	unsigned long addr = ko.kallsyms_lookup_name(name);
	bool data = need == KO_DATA_OPTIONAL || need == KO_DATA_REQUIRED;
	bool required = need == KO_REQUIRED || need == KO_DATA_REQUIRED;

	*field = NULL;
	if (!addr) {
		if (!required)
			return 0;
		pr_err("kernel symbol %s not found in kallsyms; this kernel is not supported\n", name);
		return -ENOENT;
	}
	if (!data && !ko_callable(addr)) {
		pr_err("%s has no ENDBR (sealed) and the CPU enforces IBT: calling it would BUG(); boot with ibt=off to use knockout\n",
		       name);
		return -EOPNOTSUPP;
	}
	*field = (void *)addr;
	return 0;
}

#define KO_LOOKUP(field, name, need)					\
	do {								\
		int __ret = ko_lookup((void **)&ko.field, name, need);	\
		if (__ret)						\
			return __ret;					\
	} while (0)

static int ko_resolve(void)
{
	int ret = ko_find_kallsyms_lookup_name();

	if (ret)
		return ret;
	KO_LOOKUP(kallsyms_lookup_size_offset, "kallsyms_lookup_size_offset", KO_REQUIRED);
	KO_LOOKUP(core_kernel_text, "core_kernel_text", KO_REQUIRED);
	KO_LOOKUP(module_text_address, "__module_text_address", KO_REQUIRED);
	KO_LOOKUP(within_kprobe_blacklist, "within_kprobe_blacklist", KO_REQUIRED);
	KO_LOOKUP(search_exception_tables, "search_exception_tables", KO_REQUIRED);
	KO_LOOKUP(text_mutex, "text_mutex", KO_TEXT_MUTEX);
	/* absent when the feature is configured out: then nothing is reserved */
	KO_LOOKUP(jump_label_text_reserved, "jump_label_text_reserved", KO_OPTIONAL);
	KO_LOOKUP(jump_label_lock, "jump_label_lock", KO_OPTIONAL);
	KO_LOOKUP(jump_label_unlock, "jump_label_unlock", KO_OPTIONAL);
	KO_LOOKUP(static_call_text_reserved, "static_call_text_reserved", KO_OPTIONAL);
	KO_LOOKUP(ftrace_text_reserved, "ftrace_text_reserved", KO_OPTIONAL);
	KO_LOOKUP(alternatives_text_reserved, "alternatives_text_reserved", KO_OPTIONAL);
	KO_LOOKUP(perf_event_text_poke, "perf_event_text_poke", KO_OPTIONAL);
#ifdef CONFIG_X86_64
	KO_LOOKUP(text_poke, "text_poke", KO_REQUIRED);
	KO_LOOKUP(insn_decode, "insn_decode", KO_REQUIRED);
	KO_LOOKUP(find_vm_area, "find_vm_area", KO_REQUIRED);
	KO_LOOKUP(set_memory_ro, "set_memory_ro", KO_REQUIRED);
	KO_LOOKUP(set_memory_x, "set_memory_x", KO_REQUIRED);
#if KO_EXECMEM
	KO_LOOKUP(execmem_alloc, "execmem_alloc", KO_REQUIRED);
	KO_LOOKUP(execmem_free, "execmem_free", KO_REQUIRED);
#else
	KO_LOOKUP(module_alloc, "module_alloc", KO_REQUIRED);
	KO_LOOKUP(module_memfree, "module_memfree", KO_REQUIRED);
#endif
	/*
	 * text_poke_bp() and text_poke_sync() were renamed
	 * smp_text_poke_single() and smp_text_poke_sync_each_cpu() in the
	 * x86/alternatives rework merged for Linux 6.16; same arguments.
	 * text_poke_bp() is only used by the test-only poke.
	 */
	KO_LOOKUP(text_poke_sync, "text_poke_sync", KO_OPTIONAL);
	if (!ko.text_poke_sync)
		KO_LOOKUP(text_poke_sync, "smp_text_poke_sync_each_cpu", KO_REQUIRED);
	KO_LOOKUP(text_poke_bp, "text_poke_bp", KO_OPTIONAL);
	if (!ko.text_poke_bp)
		KO_LOOKUP(text_poke_bp, "smp_text_poke_single", KO_OPTIONAL);
	KO_LOOKUP(ex_start, "__start___ex_table", KO_DATA_REQUIRED);
	KO_LOOKUP(ex_stop, "__stop___ex_table", KO_DATA_REQUIRED);
	KO_LOOKUP(jump_start, "__start___jump_table", KO_DATA_OPTIONAL);
	KO_LOOKUP(jump_stop, "__stop___jump_table", KO_DATA_OPTIONAL);
	/* data addresses only: the module never calls either */
	ko.default_ret_thunk = ko.kallsyms_lookup_name("__x86_return_thunk");
	KO_LOOKUP(ret_thunk, "x86_return_thunk", KO_DATA_OPTIONAL);
	ko.thunk_start = ko.kallsyms_lookup_name("__x86_indirect_thunk_array");
	if (ko.thunk_start) {
		unsigned long size, offset;

		/* 16 registers, one 32-byte-aligned thunk each (see arch/x86/lib/retpoline.S) */
		if (ko.kallsyms_lookup_size_offset(ko.thunk_start, &size, &offset))
			ko.thunk_end = ko.thunk_start + max(size, 16 * 32UL);
	}
#endif
#ifdef CONFIG_ARM64
	/* neither is exported; both are functions, in kallsyms without KALLSYMS_ALL */
	KO_LOOKUP(aarch64_insn_patch_text_nosync, "aarch64_insn_patch_text_nosync", KO_REQUIRED);
	KO_LOOKUP(stop_machine_cpuslocked, "stop_machine_cpuslocked", KO_REQUIRED);
#endif
	return 0;
}

/*
 * text_mutex, with the CPU-hotplug lock taken first (the order kprobes
 * use: arm64's aarch64_insn_patch_text() runs stop_machine_cpuslocked(),
 * which asserts it; on x86 it keeps one lock order for both).
 */
static int ko_text_lock_killable(void)
{
	cpus_read_lock();
	if (ko.text_mutex && mutex_lock_killable(ko.text_mutex)) {
		cpus_read_unlock();
		return -EINTR;
	}
	return 0;
}

static void ko_text_lock(void)
{
	cpus_read_lock();
	if (ko.text_mutex)
		mutex_lock(ko.text_mutex);
}

static void ko_text_unlock(void)
{
	if (ko.text_mutex)
		mutex_unlock(ko.text_mutex);
	cpus_read_unlock();
}

/* ---------------------------------------------------------------------- */
/* Cuts.                                                                  */

enum ko_phase {
	KO_PHASE_INT3,		/* x86: INT3 at addr sends entrants to the stub */
	KO_PHASE_JMP,		/* x86: jmp rel32 at addr */
	KO_PHASE_KPROBE,	/* a kprobe cut */
	KO_PHASE_WORD,		/* arm64: the new word is in place */
};

static const char *const ko_phase_name[] = {
	[KO_PHASE_INT3] = "int3",
	[KO_PHASE_JMP] = "jmp",
	[KO_PHASE_KPROBE] = "kprobe",
	[KO_PHASE_WORD] = "word",
};

struct ko_cut {
	struct list_head node;
	u32 id;
	unsigned long addr;
	unsigned int len;
	u8 old[KO_MAX_LEN];
	u8 new[KO_MAX_LEN];
	u8 site[KO_MAX_LEN];	/* what this cut wrote at addr, now */
	unsigned int site_len;
	u8 jmp[KO_JMP_LEN];	/* x86: the jmp to the stub */
	enum ko_phase phase;
	bool wait;		/* x86: an instruction boundary inside (addr, addr+5) */
	bool waited;		/* x86: the jmp went in after the INT3 wait-out */
	u64 arm_gen;		/* x86: ko_arm_gen when the INT3 went in */
	int slot;		/* x86 stub slot, -1 when none */
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
static struct workqueue_struct *ko_wq;

static void ko_reaper_fn(struct work_struct *work);
static DECLARE_DELAYED_WORK(ko_reaper, ko_reaper_fn);
static void ko_grace_fn(struct work_struct *work);
static DECLARE_WORK(ko_grace, ko_grace_fn);

/* A one-line answer for the reader (or the list); the errno goes to write(). */
struct ko_file {
	struct mutex lock;
	size_t len;
	size_t cap;
	bool answered;
	char *out;
};

static __printf(2, 3) void ko_say(struct ko_file *f, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vscnprintf(f->out, f->cap, fmt, ap);
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

#ifdef CONFIG_X86_64
/* Does a static branch (enabled or not) target strictly inside (addr, addr+len)? */
static bool ko_jump_entry_into(struct jump_entry *start, struct jump_entry *stop,
			       unsigned long addr, unsigned int len, unsigned long *code)
{
	struct jump_entry *e;

	for (e = start; e && e < stop; e++) {
		unsigned long target = jump_entry_target(e);

		if (target > addr && target < addr + len) {
			*code = jump_entry_code(e);
			return true;
		}
	}
	return false;
}

static bool ko_jump_label_into(struct module *owner, unsigned long addr, unsigned int len,
			       unsigned long *code)
{
	if (ko_jump_entry_into(ko.jump_start, ko.jump_stop, addr, len, code))
		return true;
#ifdef CONFIG_JUMP_LABEL
	if (owner && ko_jump_entry_into(owner->jump_entries,
					owner->jump_entries + owner->num_jump_entries,
					addr, len, code))
		return true;
#endif
	return false;
}
#endif

/* Is [addr, addr+len) something the kernel itself rewrites or forbids? */
static int ko_check_reserved(struct ko_file *f, unsigned long addr, unsigned int len,
			     struct module *owner)
{
	void *start = (void *)addr, *end = (void *)(addr + len - 1);
	const char *what = NULL;
	unsigned long code = 0;

	if (ko.within_kprobe_blacklist(addr))
		what = "on the kprobe blacklist (entry code, int3/text-poke machinery, noinstr)";
	if (!what && ko.jump_label_text_reserved) {
		if (ko.jump_label_lock)
			ko.jump_label_lock();
		if (ko.jump_label_text_reserved(start, end))
			what = "a jump label (static key) site";
#ifdef CONFIG_X86_64
		else if (ko_jump_label_into(owner, addr, len, &code))
			what = "the target of a static branch (jump label) landing inside it";
#endif
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
	if (code)
		ko_say(f, "error: %pS..+%u is %s (from %pS); choose a range no branch enters\n",
		       start, len, what, (void *)code);
	else
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

/* A cut that is in the list holds one reference on this module. */
static void ko_free_cut(struct ko_cut *c)
{
	list_del(&c->node);
	ko_release_text(c->owner);
	kfree(c);
	module_put(THIS_MODULE);
}

static void ko_text_poke_event(unsigned long addr, const u8 *old, const u8 *new, size_t len)
{
	if (ko.perf_event_text_poke)
		ko.perf_event_text_poke((void *)addr, old, len, new, len);
}

#ifdef CONFIG_X86_64

/* ---------------------------------------------------------------------- */
/* Stub slots (x86_64), and the INT3 handler that sends CPUs to them.    */

enum ko_slot_state { KO_SLOT_FREE, KO_SLOT_USED, KO_SLOT_COOLING };

static u8 *ko_stub_area;		/* KO_STUB_BYTES of executable memory, see ko_stubs_alloc() */
static u8 ko_slot_state[KO_NR_SLOTS];
static u64 ko_slot_gen[KO_NR_SLOTS];
static unsigned long ko_trap[KO_NR_SLOTS];	/* site whose INT3 leads to this slot, 0 if none */
static u64 ko_gen;			/* slot grace-period generation (ko_lock) */
static u64 ko_arm_gen;			/* INT3 wait-out generation (ko_lock) */
static bool ko_stubs_leaked;

static void ko_arm_fn(struct work_struct *work);
static DECLARE_WORK(ko_arm_work, ko_arm_fn);

static unsigned long ko_stub(int slot)
{
	return (unsigned long)ko_stub_area + slot * KO_SLOT_SIZE;
}

/*
 * DIE_INT3: a CPU hit an INT3 at regs->ip - 1.  If this module put it
 * there, continue in that cut's stub.  Runs in exc_int3()'s NMI-like
 * context: no locks, only READ_ONCE of the slot tables.  A USED slot wins
 * over a COOLING one for the same site (a site cut again while its old
 * stub still cools).
 */
static int ko_int3_notify(struct notifier_block *nb, unsigned long val, void *data)
{
	struct die_args *args = data;
	struct pt_regs *regs = args->regs;
	unsigned long site;
	int i, found = -1;

	if (val != DIE_INT3 || !regs || user_mode(regs))
		return NOTIFY_DONE;
	site = regs->ip - 1;
	for (i = 0; i < KO_NR_SLOTS; i++) {
		if (READ_ONCE(ko_trap[i]) != site)
			continue;
		found = i;
		if (READ_ONCE(ko_slot_state[i]) == KO_SLOT_USED)
			break;
	}
	if (found < 0)
		return NOTIFY_DONE;
	regs->ip = ko_stub(found);
	return NOTIFY_STOP;
}
NOKPROBE_SYMBOL(ko_int3_notify);

static struct notifier_block ko_int3_nb = {
	.notifier_call = ko_int3_notify,
};

/*
 * The stub area: executable memory in the module range (within rel32 of
 * core and module text), allocated like kprobes' instruction pages
 * (alloc_insn_page()): writable + NX, filled with INT3, then read-only, and
 * only then executable (never W+X).  VM_FLUSH_RESET_PERMS makes the free
 * put the direct map back.
 */
static int ko_stubs_alloc(void)
{
	unsigned long addr;
	struct vm_struct *vm;

#if KO_EXECMEM
	ko_stub_area = ko.execmem_alloc(EXECMEM_KPROBES, KO_STUB_BYTES);
#else
	ko_stub_area = ko.module_alloc(KO_STUB_BYTES);
#endif
	if (!ko_stub_area) {
		pr_err("cannot allocate %d bytes of executable memory for stubs\n", KO_STUB_BYTES);
		return -ENOMEM;
	}
	addr = (unsigned long)ko_stub_area;
	memset(ko_stub_area, KO_INT3, KO_STUB_BYTES);
	vm = ko.find_vm_area(ko_stub_area);
	if (vm)
		vm->flags |= VM_FLUSH_RESET_PERMS;
	ko.set_memory_ro(addr, KO_STUB_BYTES >> PAGE_SHIFT);
	ko.set_memory_x(addr, KO_STUB_BYTES >> PAGE_SHIFT);
	return 0;
}

static void ko_stubs_free(void)
{
	if (!ko_stub_area)
		return;
	if (ko_stubs_leaked) {
		pr_warn("leaving the stub memory at %px allocated: a stuck cut may still jump into it\n",
			ko_stub_area);
		return;
	}
#if KO_EXECMEM
	ko.execmem_free(ko_stub_area);
#else
	ko.module_memfree(ko_stub_area);
#endif
	ko_stub_area = NULL;
}

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

static unsigned long ko_x86_rel_target(const struct insn *insn, unsigned long ip)
{
	return ip + insn->length + (long)insn->immediate.value;
}

static bool ko_x86_rip_relative(const struct insn *insn)
{
	return insn->modrm.nbytes &&
	       X86_MODRM_MOD(insn->modrm.bytes[0]) == 0 &&
	       X86_MODRM_RM(insn->modrm.bytes[0]) == 5;
}

static bool ko_x86_ff_reg(const struct insn *insn, u8 lo, u8 hi)
{
	u8 reg;

	if (insn->opcode.bytes[0] != 0xff || !insn->modrm.nbytes)
		return false;
	reg = X86_MODRM_REG(insn->modrm.bytes[0]);
	return reg >= lo && reg <= hi;
}

/* jmp *x (ff /4, /5), or a jmp to a retpoline thunk (the same, compiled) */
static bool ko_x86_indirect_jump(const struct insn *insn, unsigned long ip)
{
	u8 op0 = insn->opcode.bytes[0];

	if (ko_x86_ff_reg(insn, 4, 5))
		return true;
	if (ko.thunk_start && (op0 == 0xe9 || op0 == 0xeb)) {
		unsigned long target = ko_x86_rel_target(insn, ip);

		return target >= ko.thunk_start && target < ko.thunk_end;
	}
	return false;
}

/* call rel32, call *x (ff /2, /3) */
static bool ko_x86_call(const struct insn *insn)
{
	return insn->opcode.bytes[0] == 0xe8 || ko_x86_ff_reg(insn, 2, 3);
}

static bool ko_x86_trap(const struct insn *insn)
{
	u8 op0 = insn->opcode.bytes[0];

	return op0 == KO_INT3 || op0 == 0xcd ||
	       (op0 == 0x0f && insn->opcode.bytes[1] == 0x0b);
}

static bool ko_x86_no_fallthrough(const struct insn *insn, unsigned long ip)
{
	u8 op0 = insn->opcode.bytes[0];

	return op0 == 0xc3 || op0 == 0xc2 || op0 == 0xe9 || op0 == 0xeb ||
	       op0 == KO_INT3 || ko_x86_indirect_jump(insn, ip) ||
	       (op0 == 0x0f && insn->opcode.bytes[1] == 0x0b);
}

/* Does an exception-table fixup of the core kernel or of owner land strictly inside? */
static const struct exception_table_entry *
ko_fixup_into(const struct exception_table_entry *start, const struct exception_table_entry *stop,
	      unsigned long addr, unsigned int len)
{
	const struct exception_table_entry *e;

	for (e = start; e && e < stop; e++) {
		unsigned long fixup = (unsigned long)&e->fixup + e->fixup;

		if (fixup > addr && fixup < addr + len)
			return e;
	}
	return NULL;
}

static int ko_x86_check_fixups(struct ko_file *f, unsigned long addr, unsigned int len,
			       struct module *owner)
{
	const struct exception_table_entry *e;

	e = ko_fixup_into(ko.ex_start, ko.ex_stop, addr, len);
	if (!e && owner)
		e = ko_fixup_into(owner->extable, owner->extable + owner->num_exentries, addr, len);
	if (!e)
		return 0;
	ko_say(f, "error: the exception fixup of %pS lands inside %pS..+%u; choose a range no fixup enters\n",
	       (void *)((unsigned long)&e->insn + e->insn), (void *)addr, len);
	return -EBUSY;
}

/*
 * A branch from the function to target: if target is in a "<func>.cold"
 * part (GCC's -freorder-blocks-and-partition; older GCCs number them
 * ".cold.N"), scan that part too: it may jump back into the range.  Found
 * from the function's own branches, since only they enter a cold part;
 * addr-to-symbol lookups are binary searches (a name lookup would scan all
 * of kallsyms).  seen[] remembers the parts already scanned.
 */
static int ko_x86_scan(struct ko_file *f, unsigned long start, unsigned long end,
		       unsigned long addr, unsigned int len, bool check_range, bool *wait);

#define KO_MAX_COLD 8

static int ko_x86_scan_cold(struct ko_file *f, unsigned long target, unsigned long addr,
			    unsigned int len, unsigned long *seen, int *nseen)
{
	unsigned long size, offset, part;
	char name[KSYM_SYMBOL_LEN];
	int i;

	if (!ko.kallsyms_lookup_size_offset(target, &size, &offset))
		return 0;
	part = target - offset;
	for (i = 0; i < *nseen; i++)
		if (seen[i] == part)
			return 0;
	scnprintf(name, sizeof(name), "%ps", (void *)part);
	if (!strstr(name, ".cold"))
		return 0;
	if (*nseen < KO_MAX_COLD)
		seen[(*nseen)++] = part;
	return ko_x86_scan(f, part, part + size, addr, len, false, NULL);
}

/*
 * Decode [start, end) as it was before any of our cuts; when check_range,
 * also check [addr, addr+len) can be displaced (see the header comment).
 * Any relative branch into the interior of the range is refused.
 */
static int ko_x86_scan(struct ko_file *f, unsigned long start, unsigned long end,
		       unsigned long addr, unsigned int len, bool check_range, bool *wait)
{
	bool at_addr = false, at_end = false, prev_stop = true;
	unsigned long ip, cold_seen[KO_MAX_COLD];
	int ret, ncold = 0;
	u8 buf[MAX_INSN_SIZE];
	struct insn insn;

	for (ip = start; ip < end; ip += insn.length) {
		unsigned int n = min_t(unsigned long, MAX_INSN_SIZE, end - ip);
		bool rel8;

		ko_read_orig(ip, buf, n);
		if (ko.insn_decode(&insn, buf, n, INSN_MODE_64) < 0 || !insn.length) {
			ko_say(f, "error: cannot decode the instruction at %pS; knockout will not cut this function\n",
			       (void *)ip);
			return -EINVAL;
		}
		if (ko_x86_rel_branch(&insn, &rel8)) {
			unsigned long target = ko_x86_rel_target(&insn, ip);

			if (target > addr && target < addr + len) {
				ko_say(f, "error: the branch at %pS jumps into %pS..+%u; choose a range no branch enters\n",
				       (void *)ip, (void *)addr, len);
				return -EBUSY;
			}
			if (check_range && (target < start || target >= end)) {
				ret = ko_x86_scan_cold(f, target, addr, len, cold_seen, &ncold);
				if (ret)
					return ret;
			}
		}
		if (!check_range)
			continue;
		if (ip == addr)
			at_addr = true;
		if (ip == addr + len)
			at_end = true;
		if (ip > addr && ip < addr + KO_JMP_LEN)
			*wait = true;
		if (buf[0] == KO_INT3 && !prev_stop) {
			ko_say(f, "error: breakpoint at %pS (a kprobe?); remove it first\n", (void *)ip);
			return -EBUSY;
		}
		if (ip >= addr && ip < addr + len) {
			unsigned long next = ip + insn.length;

			if (buf[0] == KO_INT3) {
				ko_say(f, "error: INT3 at %pS inside the range; choose another instruction\n",
				       (void *)ip);
				return -EBUSY;
			}
			if (ko.search_exception_tables(ip)) {
				ko_say(f, "error: %pS has an exception-table fixup and cannot be displaced; choose another instruction\n",
				       (void *)ip);
				return -EBUSY;
			}
			if (ko_x86_call(&insn) && next > addr && next < addr + KO_JMP_LEN) {
				ko_say(f, "error: the call at %pS returns to %pS, inside the 5-byte jmp: a task sleeping in the callee would resume mid-instruction; start the cut at %pS\n",
				       (void *)ip, (void *)next, (void *)next);
				return -EBUSY;
			}
		}
		if (ko_x86_indirect_jump(&insn, ip)) {
			ko_say(f, "error: %pS is an indirect jump (jump table?); knockout cannot prove no jump lands inside the range\n",
			       (void *)ip);
			return -EBUSY;
		}
		prev_stop = ko_x86_no_fallthrough(&insn, ip);
	}
	if (!check_range)
		return 0;
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

static int ko_x86_check_function(struct ko_file *f, unsigned long addr, unsigned int len,
				 struct module *owner, bool *wait)
{
	unsigned long size, offset, start, end;
	int ret;

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
	*wait = false;
	ret = ko_x86_scan(f, start, end, addr, len, true, wait);
	if (!ret)
		ret = ko_x86_check_fixups(f, addr, len, owner);
	return ret;
}

static bool ko_fits_s32(long v)
{
	return v >= S32_MIN && v <= S32_MAX;
}

/*
 * The return thunk a "jmp rel32" in NEW means, or 0: NEW returns the way
 * the code it replaces was compiled to (jmp __x86_return_thunk), or the
 * way the planner read the kernel returning (jmp to the chosen thunk).
 */
static unsigned long ko_x86_return_thunk_target(unsigned long target)
{
	if (!target)
		return 0;
	if (target == ko.default_ret_thunk)
		return target;
	if (ko.ret_thunk && target == READ_ONCE(*ko.ret_thunk))
		return target;
	return 0;
}

/*
 * Write the 5-byte return at out (to run at ip) as the kernel writes its
 * own at boot (apply_returns() -> patch_return() in
 * arch/x86/kernel/alternative.c): with X86_FEATURE_RETHUNK, a jmp to the
 * thunk the mitigations chose (x86_return_thunk); without it, "ret" then
 * INT3 padding.  Since Linux kernel commit 4461438a8405 ("x86/retpoline:
 * Ensure default return thunk isn't used at runtime") (in v6.9),
 * __x86_return_thunk itself warns ("Unpatched return thunk in use") when
 * the kernel was built with the return mitigations: a stub may never jump
 * there on a kernel that patched its returns to something else.
 */
static int ko_x86_write_return(unsigned long ip, u8 *out)
{
	unsigned long thunk = ko.ret_thunk ? READ_ONCE(*ko.ret_thunk) : ko.default_ret_thunk;
	long disp;

	if (!cpu_feature_enabled(X86_FEATURE_RETHUNK) || !thunk) {
		out[0] = 0xc3;
		memset(out + 1, KO_INT3, KO_JMP_LEN - 1);
		return 0;
	}
	disp = (long)thunk - (long)(ip + KO_JMP_LEN);
	if (!ko_fits_s32(disp))
		return -ERANGE;
	out[0] = 0xe9;
	put_unaligned_le32((s32)disp, out + 1);
	return 0;
}

/* NEW (written for addr) re-aimed to run at stub, followed by jmp back. */
static int ko_x86_build_stub(struct ko_file *f, const u8 *new, unsigned int len,
			     unsigned long addr, unsigned long stub, u8 *out)
{
	unsigned int off;
	struct insn insn;
	long disp;

	memset(out, KO_INT3, KO_SLOT_SIZE);
	memcpy(out, new, len);
	for (off = 0; off < len; off += insn.length) {
		bool rel8;

		if (ko.insn_decode(&insn, new + off, len - off, INSN_MODE_64) < 0 ||
		    !insn.length) {
			ko_say(f, "error: NEW does not decode as whole instructions at +%u\n", off);
			return -EINVAL;
		}
		if (ko_x86_call(&insn)) {
			ko_say(f, "error: NEW has a call at +%u (direct or indirect); a call may not be displaced into a stub\n",
			       off);
			return -EINVAL;
		}
		if (ko_x86_trap(&insn)) {
			ko_say(f, "error: NEW has a trap instruction (INT3/INT n/UD2) at +%u\n", off);
			return -EINVAL;
		}
		if (ko_x86_rel_branch(&insn, &rel8)) {
			unsigned long target = ko_x86_rel_target(&insn, addr + off);

			if (rel8) {
				if (target < addr || target > addr + len) {
					ko_say(f, "error: NEW has a short branch at +%u leaving the range; use a rel32 branch\n",
					       off);
					return -EINVAL;
				}
				continue;	/* position independent inside the stub */
			}
			if (target > addr && target < addr + len) {
				ko_say(f, "error: NEW has a rel32 branch at +%u aimed inside the replaced range; use a short branch\n",
				       off);
				return -EINVAL;
			}
			if (insn.opcode.bytes[0] == 0xe9 && insn.length == KO_JMP_LEN &&
			    ko_x86_return_thunk_target(target)) {
				if (ko_x86_write_return(stub + off, out + off)) {
					ko_say(f, "error: the return at +%u cannot reach the return thunk from the stub\n",
					       off);
					return -ERANGE;
				}
				continue;
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
			WRITE_ONCE(ko_slot_state[i], KO_SLOT_USED);
			return i;
		}
	}
	return -1;
}

/* The slot (and its INT3 entry) waits for a grace period before reuse. */
static void ko_cool_slot(int slot)
{
	if (slot < 0)
		return;
	ko_slot_gen[slot] = ko_gen;
	WRITE_ONCE(ko_slot_state[slot], KO_SLOT_COOLING);
	queue_work(ko_wq, &ko_grace);
}

/* Write bytes at addr and make every CPU see them (text_mutex held). */
static void ko_poke_sync(unsigned long addr, const void *bytes, size_t len)
{
	ko.text_poke((void *)addr, bytes, len);
	ko.text_poke_sync();
}

/* Step 3: the tail, then the first byte of the jmp (our INT3 is at addr). */
static void ko_x86_commit_jmp(struct ko_cut *c)
{
	u8 before[KO_JMP_LEN];

	memcpy(before, (void *)c->addr, KO_JMP_LEN);
	ko_poke_sync(c->addr + 1, c->jmp + 1, KO_JMP_LEN - 1);
	ko_poke_sync(c->addr, c->jmp, 1);
	ko_text_poke_event(c->addr, before, c->jmp, KO_JMP_LEN);
	memcpy(c->site, c->jmp, KO_JMP_LEN);
	c->site_len = KO_JMP_LEN;
	c->phase = KO_PHASE_JMP;
}

/* Is the text at c->addr what the cut's phase says (and the rest original)? */
static bool ko_site_intact(const struct ko_cut *c)
{
	return !memcmp((void *)c->addr, c->site, c->site_len) &&
	       !memcmp((void *)(c->addr + c->site_len), c->old + c->site_len,
		       c->len - c->site_len);
}

static int ko_arch_apply(struct ko_file *f, struct ko_cut *c)
{
	static const u8 int3 = KO_INT3;
	u8 stub_buf[KO_SLOT_SIZE], before[KO_SLOT_SIZE];
	unsigned long stub;
	long disp;
	int ret;

	ret = ko_x86_check_function(f, c->addr, c->len, c->owner, &c->wait);
	if (ret)
		return ret;
	c->slot = ko_alloc_slot();
	if (c->slot < 0) {
		ko_say(f, "error: all %d stub slots are in use or cooling down; revert a cut or retry in a second\n",
		       KO_NR_SLOTS);
		return -EAGAIN;
	}
	stub = ko_stub(c->slot);
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
	memcpy(before, (void *)stub, KO_SLOT_SIZE);
	ko_poke_sync(stub, stub_buf, KO_SLOT_SIZE);
	if (memcmp((void *)stub, stub_buf, KO_SLOT_SIZE)) {
		ko_say(f, "error: stub write did not take\n");
		ret = -EIO;
		goto free_slot;
	}
	ko_text_poke_event(stub, before, stub_buf, KO_SLOT_SIZE);
	c->jmp[0] = 0xe9;
	put_unaligned_le32((s32)disp, c->jmp + 1);
	/* step 1: INT3 on the first byte; from here on entrants run the stub */
	WRITE_ONCE(ko_trap[c->slot], c->addr);
	ko_poke_sync(c->addr, &int3, 1);
	ko_text_poke_event(c->addr, c->old, &int3, 1);
	c->site[0] = KO_INT3;
	c->site_len = 1;
	c->phase = KO_PHASE_INT3;
	c->arm_gen = ko_arm_gen;
	/* step 2: wait for stopped contexts only where one could be inside the jmp */
	if (!c->wait && ko_site_intact(c))
		ko_x86_commit_jmp(c);
	return 0;

free_slot:
	WRITE_ONCE(ko_slot_state[c->slot], KO_SLOT_FREE);
	c->slot = -1;
	return ret;
}

/* Put the original bytes back; text_mutex held, bytes checked by the caller. */
static void ko_arch_revert(struct ko_cut *c)
{
	static const u8 int3 = KO_INT3;
	u8 before[KO_JMP_LEN];

	memcpy(before, (void *)c->addr, KO_JMP_LEN);
	if (c->phase == KO_PHASE_JMP) {
		/* a CPU on the INT3 meanwhile goes to the stub: still correct */
		ko_poke_sync(c->addr, &int3, 1);
		ko_poke_sync(c->addr + 1, c->old + 1, KO_JMP_LEN - 1);
	}
	ko_poke_sync(c->addr, c->old, 1);
	ko_text_poke_event(c->addr, before, c->old, KO_JMP_LEN);
	ko_cool_slot(c->slot);
	c->slot = -1;
}

static const char *ko_mechanism(void)
{
	return "text_poke_bp+stub";
}

static const char *ko_protocol(const struct ko_cut *c)
{
	return c->wait ? "optprobe" : "bp";
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

	if (!ko.text_poke_bp) {
		ko_say(f, "error: this kernel has neither text_poke_bp nor smp_text_poke_single\n");
		return -EOPNOTSUPP;
	}
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

static int ko_arch_init(void)
{
	int ret = ko_stubs_alloc();

	if (ret)
		return ret;
	ret = register_die_notifier(&ko_int3_nb);
	if (ret)
		ko_stubs_free();
	return ret;
}

static void ko_arch_exit(void)
{
	/* waits for every CPU to be out of the handler (synchronize_rcu()) */
	unregister_die_notifier(&ko_int3_nb);
	ko_stubs_free();
}

#endif /* CONFIG_X86_64 */

#ifdef CONFIG_ARM64

struct ko_arm64_patch {
	void *addr;
	u32 insn;
	u32 expect;		/* the word that must be there */
	bool check;		/* compare with expect first (not for the test-only poke) */
	atomic_t cpu_count;
};

/*
 * aarch64_insn_patch_text_cb() (arch/arm64/kernel/patching.c, 6.1) with the
 * compare inside: the last CPU in checks the word and writes it while every
 * other online CPU waits here with interrupts off; they isb() after.
 */
static int ko_arm64_patch_cb(void *arg)
{
	struct ko_arm64_patch *pp = arg;
	int ret = 0;

	if (atomic_inc_return(&pp->cpu_count) == num_online_cpus()) {
		u32 now;

		if (copy_from_kernel_nofault(&now, pp->addr, sizeof(now)))
			ret = -EFAULT;
		else if (pp->check && now != pp->expect)
			ret = -ESTALE;
		else
			ret = ko.aarch64_insn_patch_text_nosync(pp->addr, pp->insn);
		/* Notify the other CPUs with an additional increment. */
		atomic_inc(&pp->cpu_count);
	} else {
		while (atomic_read(&pp->cpu_count) <= num_online_cpus())
			cpu_relax();
		isb();
	}
	return ret;
}
NOKPROBE_SYMBOL(ko_arm64_patch_cb);

/* One word, replacing expect (unless NULL); cpus_read_lock() held. */
static int ko_arm64_write(unsigned long addr, const u8 *bytes, const u8 *expect,
			  unsigned int len)
{
	struct ko_arm64_patch pp = {
		.addr = (void *)addr,
		.insn = get_unaligned_le32(bytes),
		.expect = expect ? get_unaligned_le32(expect) : 0,
		.check = expect != NULL,
		.cpu_count = ATOMIC_INIT(0),
	};

	if (len != AARCH64_INSN_SIZE)
		return -EINVAL;
	return ko.stop_machine_cpuslocked(ko_arm64_patch_cb, &pp, cpu_online_mask);
}

static int ko_arch_apply(struct ko_file *f, struct ko_cut *c)
{
	int ret;

	if (c->addr % AARCH64_INSN_SIZE) {
		ko_say(f, "error: arm64 cuts start on a 4-byte aligned word\n");
		return -EINVAL;
	}
	if (c->len != AARCH64_INSN_SIZE) {
		ko_say(f, "error: arm64 cuts are one word (4 bytes): a task preempted between two words would run a mix of old and new; cut one instruction (e.g. --set or --skip), not %u bytes\n",
		       c->len);
		return -EINVAL;
	}
	c->slot = -1;
	c->phase = KO_PHASE_WORD;
	memcpy(c->site, c->new, c->len);
	c->site_len = c->len;
	ret = ko_arm64_write(c->addr, c->new, c->old, c->len);
	if (ret == -ESTALE)
		ko_say(f, "error: the word at %pS changed before the write; read it again and re-plan\n",
		       (void *)c->addr);
	else if (ret)
		ko_say(f, "error: aarch64_insn_patch_text_nosync failed (%d)\n", ret);
	else
		ko_text_poke_event(c->addr, c->old, c->new, c->len);
	return ret;
}

static void ko_arch_revert(struct ko_cut *c)
{
	int ret = ko_arm64_write(c->addr, c->old, c->site, c->len);

	if (ret)
		pr_err("revert of cut %u: the write failed (%d%s)\n", c->id, ret,
		       ret == -ESTALE ? ": the word changed under the cut" : "");
	else
		ko_text_poke_event(c->addr, c->new, c->old, c->len);
}

static bool ko_site_intact(const struct ko_cut *c)
{
	return !memcmp((void *)c->addr, c->site, c->site_len);
}

static const char *ko_mechanism(void)
{
	return "aarch64_insn_patch_text";
}

static const char *ko_protocol(const struct ko_cut *c)
{
	return "patch";
}

/* TEST ONLY (poke): one word, written as a cut's is, without the compare. */
static int ko_arch_poke(struct ko_file *f, unsigned long addr, const u8 *bytes,
			unsigned int len)
{
	int ret;

	if (addr % AARCH64_INSN_SIZE || len != AARCH64_INSN_SIZE) {
		ko_say(f, "error: arm64 pokes are one 4-byte aligned word\n");
		return -EINVAL;
	}
	ret = ko_arm64_write(addr, bytes, NULL, len);
	if (ret)
		ko_say(f, "error: aarch64_insn_patch_text_nosync failed (%d)\n", ret);
	return ret;
}

static int ko_arch_init(void)
{
	return 0;
}

static void ko_arch_exit(void)
{
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

/*
 * A kprobe with a post_handler is never jump-optimized (an optimized probe
 * ignores the ip a pre_handler sets): the trick kernel/fail_function.c uses.
 */
static void ko_kprobe_post(struct kprobe *p, struct pt_regs *regs, unsigned long flags)
{
}
NOKPROBE_SYMBOL(ko_kprobe_post);

/* ---------------------------------------------------------------------- */
/* Slot recycling, the INT3 wait-out, and the dead-man switch.           */

static void ko_mark_stuck(struct ko_cut *c, const char *why)
{
	c->stuck = true;
#ifdef CONFIG_X86_64
	ko_stubs_leaked = true;
#endif
	pr_err("cut %u at %pS: the bytes there changed under the cut (%s); leaving them alone, module pinned\n",
	       c->id, (void *)c->addr, why);
}

#ifdef CONFIG_X86_64
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
	synchronize_rcu();		/* INT3 handlers on their way to a stub */
	synchronize_rcu_tasks();	/* tasks preempted inside a stub */
	mutex_lock(&ko_lock);
	for (i = 0; i < KO_NR_SLOTS; i++) {
		if (ko_slot_state[i] == KO_SLOT_COOLING && ko_slot_gen[i] <= gen) {
			WRITE_ONCE(ko_trap[i], 0);
			WRITE_ONCE(ko_slot_state[i], KO_SLOT_FREE);
		}
	}
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
		queue_work(ko_wq, &ko_grace);
}

/*
 * Step 2 of the protocol, for every cut in phase "int3": once no context
 * can still be stopped inside the range, write the jmp.
 */
static void ko_arm_fn(struct work_struct *work)
{
	struct ko_cut *c;
	bool again = false;
	u64 gen;

	mutex_lock(&ko_lock);
	gen = ko_arm_gen++;
	mutex_unlock(&ko_lock);
	synchronize_rcu();		/* interrupt and NMI handlers inside the range */
	synchronize_rcu_tasks();	/* tasks preempted inside the range */
	mutex_lock(&ko_lock);
	list_for_each_entry(c, &ko_cuts, node) {
		if (c->stuck || c->kp || c->phase != KO_PHASE_INT3)
			continue;
		if (c->arm_gen > gen) {
			again = true;
			continue;
		}
		ko_text_lock();
		if (ko_site_intact(c)) {
			ko_x86_commit_jmp(c);
			c->waited = true;
		} else {
			ko_mark_stuck(c, "before its jmp went in");
		}
		ko_text_unlock();
	}
	mutex_unlock(&ko_lock);
	if (again)
		queue_work(ko_wq, &ko_arm_work);
}
#else
static void ko_grace_fn(struct work_struct *work)
{
}
#endif

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
		ko_free_cut(c);
		return 0;
	}
	ko_text_lock();
	if (!ko_site_intact(c)) {
		ret = -EIO;
	} else {
		ko_arch_revert(c);
		if (memcmp((void *)c->addr, c->old, c->len))
			ret = -EIO;
	}
	ko_text_unlock();
	if (ret) {
		ko_mark_stuck(c, why);
		return ret;
	}
	pr_info("revert %u at %pS (%s)\n", c->id, (void *)c->addr, why);
	ko_free_cut(c);
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
	mod_delayed_work(ko_wq, &ko_reaper, time_after(next, jiffies) ? next - jiffies : 0);
}

static void ko_reaper_fn(struct work_struct *work)
{
	struct ko_cut *c, *tmp;

	mutex_lock(&ko_lock);
	list_for_each_entry_safe(c, tmp, &ko_cuts, node) {
		if (c->stuck)
			continue;
		if (time_after_eq(jiffies, c->deadline))
			ko_revert_locked(c, "TTL expired");
		else if (!c->kp && !ko_site_intact(c))
			ko_mark_stuck(c, "seen by the dead-man switch");
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

static int ko_lock_killable(struct ko_file *f)
{
	if (!mutex_lock_killable(&ko_lock))
		return 0;
	ko_say(f, "error: interrupted while waiting for another knockout command; retry\n");
	return -EINTR;
}

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
	ret = ko_check_reserved(f, c->addr, c->len, c->owner);
	if (ret)
		goto release;

	ret = ko_lock_killable(f);
	if (ret)
		goto release;
	if (ko_find_overlap(c->addr, c->len)) {
		ko_say(f, "error: %pS overlaps an active cut; revert that first\n", (void *)c->addr);
		ret = -EBUSY;
		goto unlock;
	}
	if (ko_text_lock_killable()) {
		ko_say(f, "error: interrupted while waiting for text_mutex; retry\n");
		ret = -EINTR;
		goto unlock;
	}
	if (memcmp((void *)c->addr, c->old, c->len)) {
		ko_text_unlock();
		ko_say(f, "error: the bytes at %pS are not OLD; read them again and re-plan\n",
		       (void *)c->addr);
		ret = -ESTALE;
		goto unlock;
	}
	ret = ko_arch_apply(f, c);
	if (!ret && !ko_site_intact(c)) {
		/* should not happen: put the original back and say so */
		ko_arch_revert(c);
		ko_say(f, "error: read-back after the write differs; reverted\n");
		ret = -EIO;
	}
	ko_text_unlock();
	if (ret)
		goto unlock;
	__module_get(THIS_MODULE);	/* dropped when the cut is reverted */
	c->id = ko_next_id++;
	c->deadline = jiffies + msecs_to_jiffies(ttl);
	list_add_tail(&c->node, &ko_cuts);
	ko_arm_reaper_locked();
#ifdef CONFIG_X86_64
	if (c->phase == KO_PHASE_INT3)
		queue_work(ko_wq, &ko_arm_work);
#endif
	pr_info("cut %u at %pS len %u ttl %u ms (%s, %s)\n", c->id, (void *)c->addr,
		c->len, ttl, ko_mechanism(), ko_protocol(c));
	ko_say(f, "id=%u\n", c->id);
	mutex_unlock(&ko_lock);
	return 0;

unlock:
	mutex_unlock(&ko_lock);
	if (ret == -EAGAIN)
		queue_work(ko_wq, &ko_grace);
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
	c->phase = KO_PHASE_KPROBE;
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
	k->kp.post_handler = ko_kprobe_post;
	ret = ko_lock_killable(f);
	if (ret)
		goto release;
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
	__module_get(THIS_MODULE);	/* dropped when the cut is reverted */
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
	ret = ko_lock_killable(f);
	if (ret)
		goto release;
	ko_text_lock();
	ret = ko_arch_poke(f, addr, bytes, len);
	if (!ret && memcmp((void *)addr, bytes, len)) {
		ko_say(f, "error: read-back after the poke differs\n");
		ret = -EIO;
	}
	ko_text_unlock();
	mutex_unlock(&ko_lock);
release:
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
	int ret;

	if (argc != 3 || ko_parse_u32(argv[1], U32_MAX, &id) ||
	    ko_parse_u32(argv[2], KO_MAX_TTL_MS, &ttl) || !ttl) {
		ko_say(f, "error: usage: renew ID TTL_MS\n");
		return -EINVAL;
	}
	ret = ko_lock_killable(f);
	if (ret)
		return ret;
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
	int ret, n = 0;
	u32 id;

	if (argc != 2 || (strcmp(argv[1], "all") && ko_parse_u32(argv[1], U32_MAX, &id))) {
		ko_say(f, "error: usage: revert ID | revert all\n");
		return -EINVAL;
	}
	ret = ko_lock_killable(f);
	if (ret)
		return ret;
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

static unsigned long ko_stub_addr(const struct ko_cut *c)
{
#ifdef CONFIG_X86_64
	if (c->slot >= 0)
		return ko_stub(c->slot);
#endif
	return 0;
}

/* Every cut, one line each, however many there are (the buffer grows). */
static int ko_list(struct ko_file *f)
{
	struct ko_cut *c;
	size_t n = 0, count = 0, cap;
	char *out;
	int ret;

	ret = ko_lock_killable(f);
	if (ret)
		return ret;
	list_for_each_entry(c, &ko_cuts, node)
		count++;
	cap = max_t(size_t, KO_OUT_MAX, (count + 1) * KO_LINE_MAX);
	if (cap > f->cap) {
		out = kvmalloc(cap, GFP_KERNEL);
		if (!out) {
			mutex_unlock(&ko_lock);
			ko_say(f, "error: out of memory listing %zu cuts\n", count);
			return -ENOMEM;
		}
		kvfree(f->out);
		f->out = out;
		f->cap = cap;
	}
	list_for_each_entry(c, &ko_cuts, node) {
		long left = (long)(c->deadline - jiffies);
		unsigned long stub = ko_stub_addr(c);

		n += scnprintf(f->out + n, f->cap - n,
			       "id=%u addr=%lx len=%u ttl_ms=%ld state=%s mech=%s protocol=%s phase=%s waited=%d stub=%lx unwind=%s refs=1 old=%*phN new=%*phN sym=%pS\n",
			       c->id, c->addr, c->len,
			       c->stuck ? -1L : (long)jiffies_to_msecs(max(left, 0L)),
			       c->stuck ? "stuck" : "active", c->kp ? "kprobe" : ko_mechanism(),
			       c->kp ? "kprobe" : ko_protocol(c), ko_phase_name[c->phase],
			       c->waited, stub, stub ? "no-orc" : "kernel",
			       (int)c->len, c->old, (int)c->len, c->new, (void *)c->addr);
	}
	mutex_unlock(&ko_lock);
	f->len = n;
	f->answered = true;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* The control file.                                                      */

/* CAP_SYS_ADMIN and CAP_SYS_MODULE or CAP_SYS_RAWIO: what loading this module takes. */
static bool ko_cred_ok(const struct file *file)
{
	if (file)
		return file_ns_capable(file, &init_user_ns, CAP_SYS_ADMIN) &&
		       (file_ns_capable(file, &init_user_ns, CAP_SYS_MODULE) ||
			file_ns_capable(file, &init_user_ns, CAP_SYS_RAWIO));
	return capable(CAP_SYS_ADMIN) && (capable(CAP_SYS_MODULE) || capable(CAP_SYS_RAWIO));
}

static int ko_open(struct inode *inode, struct file *file)
{
	struct ko_file *f;

	if (!ko_cred_ok(NULL))
		return -EPERM;
	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f)
		return -ENOMEM;
	f->cap = KO_OUT_MAX;
	f->out = kvmalloc(f->cap, GFP_KERNEL);
	if (!f->out) {
		kfree(f);
		return -ENOMEM;
	}
	mutex_init(&f->lock);
	file->private_data = f;
	return 0;
}

static int ko_release(struct inode *inode, struct file *file)
{
	struct ko_file *f = file->private_data;

	kvfree(f->out);
	kfree(f);
	return 0;
}

static ssize_t ko_read(struct file *file, char __user *buf, size_t count, loff_t *ppos)
{
	struct ko_file *f = file->private_data;
	ssize_t ret;

	if (mutex_lock_killable(&f->lock))
		return -EINTR;
	ret = 0;
	if (!f->answered)
		ret = ko_list(f);
	if (!ret)
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

	/* the opener's credentials, and the writer's: a passed descriptor gains nothing */
	if (!ko_cred_ok(file) || !ko_cred_ok(NULL))
		return -EPERM;
	if (mutex_lock_killable(&f->lock))
		return -EINTR;
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
	else if (!strcmp(argv[0], "list") && argc == 1)
		ret = ko_list(f);
	else
		ko_say(f, "error: unknown command; commands: read, cut, renew, revert, list\n");
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
	ko_wq = alloc_workqueue("knockout", WQ_UNBOUND | WQ_HIGHPRI | WQ_MEM_RECLAIM, 0);
	if (!ko_wq)
		return -ENOMEM;
	ret = ko_arch_init();
	if (ret)
		goto destroy;
	ko_proc = proc_create("knockout", 0600, NULL, &ko_proc_ops);
	if (!ko_proc) {
		ret = -ENOMEM;
		goto arch;
	}
	pr_info("ready: /proc/knockout (%s)\n", ko_mechanism());
	return 0;

arch:
	ko_arch_exit();
destroy:
	destroy_workqueue(ko_wq);
	return ret;
}

/*
 * Reached by a plain rmmod only when no cut is live (each holds a module
 * reference), and by "rmmod -f" whatever is live: revert what can be
 * reverted; a stuck cut keeps its stub (leaked) and its owner reference.
 */
static void __exit ko_exit(void)
{
	struct ko_cut *c, *tmp;
	int stuck = 0;

	proc_remove(ko_proc);
	cancel_delayed_work_sync(&ko_reaper);
	mutex_lock(&ko_lock);
	list_for_each_entry_safe(c, tmp, &ko_cuts, node)
		ko_revert_locked(c, "module unload");
	list_for_each_entry_safe(c, tmp, &ko_cuts, node) {
		pr_err("cut %u at %pS is stuck: its stub stays allocated and %s stays pinned\n",
		       c->id, (void *)c->addr, c->owner ? module_name(c->owner) : "vmlinux");
#ifdef CONFIG_X86_64
		/* our INT3 must not outlive its handler: give back the one byte we own */
		if (c->phase == KO_PHASE_INT3 && *(u8 *)c->addr == KO_INT3) {
			ko_text_lock();
			ko_poke_sync(c->addr, c->old, 1);
			ko_text_unlock();
		}
#endif
		list_del(&c->node);
		kfree(c);	/* its owner reference is kept on purpose */
		stuck++;
	}
	mutex_unlock(&ko_lock);
	/* the arm and grace works take ko_lock: no new ones are queued after this */
	destroy_workqueue(ko_wq);
	/* no task may still run in, or be preempted in, a stub */
	synchronize_rcu();
	synchronize_rcu_tasks();
	ko_arch_exit();
	pr_info("unloaded%s\n", stuck ? " (stuck cuts left in place, see above)" : "");
}

module_init(ko_init);
module_exit(ko_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("knockout: cut code out of the running kernel and put it back");
