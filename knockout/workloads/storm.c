/*
 * storm: the native half of knockout.workloads.memcg_storm (runs in the guest as root).
 *
 *   storm populate POD FIRST COUNT DIR   mkdir POD/c<i> for i in [FIRST, FIRST+COUNT), move
 *                                        into each, create DIR/c<i> (empty) and stat a missing
 *                                        name there (so the child owns a dentry, a negative
 *                                        dentry and an inode on its LRUs), then go back to the
 *                                        root cgroup.
 *   storm calibrate MS                   spin iterations that take about MS milliseconds here
 *   storm worker CGROUP FILE ANON_MIB PREFILL_MIB SPIN COUNTERS SLOT
 *                                        move into CGROUP, touch ANON_MIB of anonymous memory,
 *                                        read the first PREFILL_MIB of FILE at once (the pod
 *                                        starts at its limit), then forever: pread the next
 *                                        64 KiB of FILE (wrapping),
 *                                        spin SPIN iterations in pure user space (never the
 *                                        clock: hpet makes clock_gettime a syscall in the guest),
 *                                        add the bytes read to slot SLOT of COUNTERS (a file of
 *                                        64-bit counters, mapped shared)
 *   storm rate COUNTERS SECONDS          MB/s read by all workers over SECONDS (one number)
 *
 * Exit status 0 on success; 2 on bad arguments; 1 with a one-line message on stderr otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

static void die(const char *what, const char *arg)
{
	fprintf(stderr, "storm: %s %s: %s\n", what, arg, strerror(errno));
	exit(1);
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);

	if (fd < 0)
		die("open", path);
	if (write(fd, text, strlen(text)) < 0)
		die("write", path);
	close(fd);
}

static void join_cgroup(const char *dir)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	write_file(path, "0");
}

/* In the child memcg: a file (a dentry and an inode) and a negative dentry, charged there. */
static void give_dentries(const char *dir, long i)
{
	char path[4096];
	struct stat st;

	snprintf(path, sizeof(path), "%s/c%ld", dir, i);
	int fd = open(path, O_CREAT | O_WRONLY, 0644);

	if (fd < 0)
		die("create", path);
	close(fd);
	snprintf(path, sizeof(path), "%s/missing-c%ld", dir, i);
	if (stat(path, &st) == 0 || errno != ENOENT)
		die("stat (expected ENOENT)", path);
}

/* The helper moves itself into each child in turn (measured faster under TCG than starting
 * a process in each with clone3's CLONE_INTO_CGROUP: 0.54 s against 1.98 s for 300). */
static int populate(const char *pod, long first, long count, const char *dir)
{
	char path[4096];

	for (long i = first; i < first + count; i++) {
		snprintf(path, sizeof(path), "%s/c%ld", pod, i);
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			die("mkdir", path);
		join_cgroup(path);
		give_dentries(dir, i);
	}
	join_cgroup("/sys/fs/cgroup");
	return 0;
}

static volatile uint64_t sink;

static void spin(uint64_t iterations)
{
	uint64_t x = sink;

	for (uint64_t i = 0; i < iterations; i++)
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
	sink = x;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Iterations that take MS milliseconds when the vCPU runs at full speed: the fastest of many
 * ~10 ms runs (a busy host slows a TCG vCPU down now and then; a slow run says nothing).
 */
static int calibrate(double ms)
{
	uint64_t n = 1 << 12;
	double best = 1e9;

	for (;;) {
		double t0 = now();

		spin(n);
		if (now() - t0 >= 0.01)
			break;
		n *= 2;
	}
	for (int k = 0; k < 40; k++) {
		double t0 = now();

		spin(n);
		double t = now() - t0;

		if (t < best)
			best = t;
	}
	printf("%llu\n", (unsigned long long)(n * (ms / 1000.0) / best));
	return 0;
}

static uint64_t *map_counters(const char *path, int writable, long *slots)
{
	int fd = open(path, writable ? O_RDWR : O_RDONLY);
	struct stat st;

	if (fd < 0)
		die("open", path);
	if (fstat(fd, &st) < 0)
		die("stat", path);
	*slots = st.st_size / sizeof(uint64_t);
	if (*slots < 1) {
		errno = EINVAL;
		die("empty counter file", path);
	}
	void *p = mmap(NULL, st.st_size, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED,
		       fd, 0);

	if (p == MAP_FAILED)
		die("mmap", path);
	close(fd);
	return p;
}

static _Noreturn void worker(const char *cgroup, const char *file, long anon_mib,
			     long prefill_mib, uint64_t iterations, const char *counters, long slot)
{
	long slots;
	uint64_t *counter = map_counters(counters, 1, &slots);
	static char buf[CHUNK];

	if (slot < 0 || slot >= slots) {
		errno = ERANGE;
		die("slot out of range of", counters);
	}
	join_cgroup(cgroup);
	size_t anon = (size_t)anon_mib << 20;
	char *mem = mmap(NULL, anon, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (mem == MAP_FAILED)
		die("mmap anonymous memory for", file);
	for (size_t off = 0; off < anon; off += 4096)
		mem[off] = 1;
	int fd = open(file, O_RDONLY);
	struct stat st;

	if (fd < 0)
		die("open", file);
	if (fstat(fd, &st) < 0 || st.st_size < CHUNK) {
		errno = EINVAL;
		die("data file smaller than 64 KiB:", file);
	}
	off_t off = 0;

	while (off < ((off_t)prefill_mib << 20) && off + CHUNK <= st.st_size) {
		ssize_t n = pread(fd, buf, CHUNK, off);

		if (n <= 0)
			die("pread", file);
		off += n;
	}
	/* started: 1 byte "read"; a worker restarted after an OOM kill keeps counting on */
	uint64_t unstarted = 0;
	__atomic_compare_exchange_n(&counter[slot], &unstarted, 1, 0, __ATOMIC_RELAXED,
				    __ATOMIC_RELAXED);
	for (;;) {
		if (off + CHUNK > st.st_size)
			off = 0;
		ssize_t n = pread(fd, buf, CHUNK, off);

		if (n <= 0)
			die("pread", file);
		off += n;
		spin(iterations);
		__atomic_add_fetch(&counter[slot], (uint64_t)n, __ATOMIC_RELAXED);
	}
}

static uint64_t total(const uint64_t *counter, long slots)
{
	uint64_t sum = 0;

	for (long i = 0; i < slots; i++)
		sum += __atomic_load_n(&counter[i], __ATOMIC_RELAXED);
	return sum;
}

static int rate(const char *counters, double seconds)
{
	long slots;
	const uint64_t *counter = map_counters(counters, 0, &slots);
	struct timespec ts = { (time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9) };
	uint64_t b0 = total(counter, slots);
	double t0 = now();

	nanosleep(&ts, NULL);
	uint64_t b1 = total(counter, slots);
	double t1 = now();

	printf("%.4f\n", (b1 - b0) / 1e6 / (t1 - t0));
	return 0;
}

static int usage(void)
{
	fputs("usage: storm populate POD FIRST COUNT DIR | calibrate MS | "
	      "worker CGROUP FILE ANON_MIB PREFILL_MIB SPIN COUNTERS SLOT | rate COUNTERS SECONDS\n",
	      stderr);
	return 2;
}

int main(int argc, char **argv)
{
	if (argc == 6 && !strcmp(argv[1], "populate"))
		return populate(argv[2], atol(argv[3]), atol(argv[4]), argv[5]);
	if (argc == 3 && !strcmp(argv[1], "calibrate"))
		return calibrate(atof(argv[2]));
	if (argc == 9 && !strcmp(argv[1], "worker"))
		worker(argv[2], argv[3], atol(argv[4]), atol(argv[5]), strtoull(argv[6], NULL, 10),
		       argv[7], atol(argv[8]));
	if (argc == 4 && !strcmp(argv[1], "rate"))
		return rate(argv[2], atof(argv[3]));
	return usage();
}
