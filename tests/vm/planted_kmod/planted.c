// SPDX-License-Identifier: GPL-2.0
/*
 * planted.c - TEST ONLY: a planted culprit in the kernel, for tests/vm/test_climb_kernel.py.
 *
 * Each write(2) to /proc/planted_chain runs a chain of three functions:
 *
 *   planted_outer    the file's write handler: the syscall's real work.  It
 *                    runs the chain and counts the request as served (read
 *                    the file: the number served so far).  Cut it and writes
 *                    return 0 and nothing is served: the work stops.
 *   planted_culprit  loops until the leaves report PLANTED_UNITS units of
 *                    progress.  A call that reports none (a cut leaf) makes
 *                    the culprit do that unit's work itself: cutting the leaf
 *                    only moves the heat here.  Cut the culprit and the cost
 *                    is gone while every request is still served.
 *   planted_leaf     one unit of work, reports one unit of progress.
 *
 * So the culprit calls the leaf PLANTED_UNITS times per call (the fan-out the
 * climb's cost split must find).  noipa (GCC >= 8): not inlined, not cloned,
 * and no caller may assume what a callee returns (a cut changes it).
 */
#include <linux/atomic.h>
#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>

#define PLANTED_UNITS 16

#define planted_fn __attribute__((__noipa__))

static unsigned int work = 6000;
module_param(work, uint, 0644);
MODULE_PARM_DESC(work, "iterations of the leaf's loop per unit of work");

static unsigned long planted_sink;
static atomic_long_t planted_served = ATOMIC_LONG_INIT(0);

/* a unit of work, inlined into both the leaf and the culprit */
static __always_inline void planted_work(unsigned long key)
{
	unsigned long x = READ_ONCE(planted_sink) ^ key;
	unsigned int i;

	for (i = 0; i < READ_ONCE(work); i++)
		x = x * 6364136223846793005UL + 1442695040888963407UL;
	WRITE_ONCE(planted_sink, x);
}

planted_fn long planted_leaf(unsigned long key);
planted_fn long planted_culprit(unsigned long key);
planted_fn ssize_t planted_outer(struct file *file, const char __user *buf, size_t count,
				 loff_t *ppos);

planted_fn long planted_leaf(unsigned long key)
{
	planted_work(key);
	return 1;
}

planted_fn long planted_culprit(unsigned long key)
{
	long done = 0;
	int tries;

	for (tries = 0; done < PLANTED_UNITS && tries < PLANTED_UNITS; tries++) {
		long got = planted_leaf(key);

		if (got <= 0)
			planted_work(key); /* no progress: the same unit of work, done here */
		done += got > 0 ? got : 1;
	}
	return done;
}

planted_fn ssize_t planted_outer(struct file *file, const char __user *buf, size_t count,
				 loff_t *ppos)
{
	WRITE_ONCE(planted_sink, READ_ONCE(planted_sink) + planted_culprit(count));
	atomic_long_inc(&planted_served);
	return count;
}

static int planted_show(struct seq_file *m, void *v)
{
	seq_printf(m, "%ld\n", atomic_long_read(&planted_served));
	return 0;
}

static int planted_open(struct inode *inode, struct file *file)
{
	return single_open(file, planted_show, NULL);
}

static const struct proc_ops planted_ops = {
	.proc_open = planted_open,
	.proc_read = seq_read,
	.proc_lseek = seq_lseek,
	.proc_release = single_release,
	.proc_write = planted_outer,
};

static struct proc_dir_entry *planted_entry;

static int __init planted_init(void)
{
	planted_entry = proc_create("planted_chain", 0600, NULL, &planted_ops);
	return planted_entry ? 0 : -ENOMEM;
}

static void __exit planted_exit(void)
{
	proc_remove(planted_entry);
}

module_init(planted_init);
module_exit(planted_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("TEST ONLY: a planted culprit for knockout's kernel climb");
