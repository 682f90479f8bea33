/* The program knockout's process tests cut into.
 *
 * usage: target NTHREADS [idle|spin]
 *   NTHREADS = 0: the main thread itself runs the hot loop (single-threaded);
 *   NTHREADS > 0: that many worker threads run it and the main thread answers.
 *   Workers sleep 200 us after every 4096 iterations, to share the machine;
 *   idle: each iteration sleeps 10 ms (for benchmarks with many threads);
 *   spin: one more thread loops in spin() forever;
 *   churn: one more thread keeps creating short-lived threads that call
 *          compute() and exit (threads appear while knockout attaches);
 *   alarm: SIGALRM every millisecond, counted by a handler; the count is
 *          printed after the results ("... alarms=N");
 *   leader-exits: the main thread hands stdin to a thread and exits.
 *
 * Every worker calls compute(7), outer(7) and flagged() in a loop.  For each
 * line read on stdin the program waits until every worker has finished a
 * call that *started after* the line arrived, then prints one line:
 *   "c,o,f c,o,f ..."  (one triple per worker)
 * Unmodified: "22,1049,1" for every worker.
 */
#include <poll.h>
#include <signal.h>
#include <sys/time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NOIPA __attribute__((noipa))

volatile int factor = 3, scale = 1000;

/* the division is slow: a thread stopped in compute() is usually stopped
 * right after it, inside the function's body */
NOIPA int compute(int x) { return x * factor * 1000 / scale + 1; }

NOIPA int helper(int x) { return x * x; }

NOIPA int outer(int x) { return helper(x) + 1000; }

NOIPA void mark(volatile int *p) { *p = 1; }

NOIPA int flagged(void)
{
	volatile int f = 0;
	mark(&f);
	return f;
}

void spin(void);
static void *spinner(void *arg)
{
	(void)arg;
	spin();
	return NULL;
}

static void *short_lived(void *arg)
{
	int *out = arg;
	for (int i = 0; i < 100; i++)
		*out = compute(7);
	return NULL;
}

static void *churner(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_t t[4];
		int out[4];
		for (int i = 0; i < 4; i++)
			pthread_create(&t[i], NULL, short_lived, &out[i]);
		for (int i = 0; i < 4; i++)
			pthread_join(t[i], NULL);
		usleep(100);
	}
	return NULL;
}

struct slot {
	_Atomic unsigned gen;
	_Atomic int c, o, f;
	char pad[48];
};

static _Atomic unsigned generation;
static volatile sig_atomic_t alarms, alarm_mode;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}
static struct slot *slots;
static int idle;

static void iterate(struct slot *s)
{
	unsigned g = atomic_load(&generation);
	int c = compute(7), o = outer(7), f = flagged();
	atomic_store(&s->c, c);
	atomic_store(&s->o, o);
	atomic_store(&s->f, f);
	atomic_store(&s->gen, g);
	if (idle)
		usleep(10000);
}

/* Bursts of calls with short sleeps between them: the threads keep running
 * through the functions, yet leave CPU to the rest of a shared machine. */
static void *worker(void *arg)
{
	for (unsigned long i = 1;; i++) {
		iterate(arg);
		if ((i & 4095) == 0)
			usleep(200);
	}
	return NULL;
}

static void report(int n)
{
	for (int i = 0; i < n; i++)
		printf("%s%d,%d,%d", i ? " " : "", atomic_load(&slots[i].c),
		       atomic_load(&slots[i].o), atomic_load(&slots[i].f));
	if (alarm_mode)
		printf(" alarms=%d", (int)alarms);
	printf("\n");
	fflush(stdout);
}

static int line_ready(int timeout_ms)
{
	struct pollfd p = { .fd = 0, .events = POLLIN };
	return poll(&p, 1, timeout_ms) > 0;
}

static int read_line(void)
{
	int ch;
	while ((ch = getchar()) != EOF && ch != '\n')
		;
	return ch != EOF;
}

static void single_threaded(void)
{
	for (unsigned long i = 0;; i++) {
		iterate(&slots[0]);
		if ((i & 255) == 0 && line_ready(0)) {
			if (!read_line())
				return;
			atomic_fetch_add(&generation, 1);
			iterate(&slots[0]);
			report(1);
		}
	}
}

static void *serve(void *arg)
{
	int n = (int)(long)arg;
	printf("ready\n");
	fflush(stdout);
	while (read_line()) {
		unsigned g = atomic_fetch_add(&generation, 1) + 1;
		for (int i = 0; i < n; i++)
			while (atomic_load(&slots[i].gen) < g)
				usleep(50);
		report(n);
	}
	exit(0);
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 0;
	idle = argc > 2 && argv[2][0] == 'i';
	if (argc > 2 && argv[2][0] == 's') {
		pthread_t t;
		pthread_create(&t, NULL, spinner, NULL);
	}
	if (argc > 2 && argv[2][0] == 'a') {
		struct itimerval every_ms = { { 0, 1000 }, { 0, 1000 } };
		struct sigaction sa = { .sa_handler = on_alarm, .sa_flags = SA_RESTART };
		alarm_mode = 1;
		sigaction(SIGALRM, &sa, NULL);
		setitimer(ITIMER_REAL, &every_ms, NULL);
	}
	if (argc > 2 && argv[2][0] == 'c') {
		pthread_t t;
		pthread_create(&t, NULL, churner, NULL);
	}
	slots = calloc(n ? n : 1, sizeof(*slots));
	if (n == 0) {
		printf("ready\n");
		fflush(stdout);
		single_threaded();
		return 0;
	}
	for (int i = 0; i < n; i++) {
		pthread_t t;
		pthread_create(&t, NULL, worker, &slots[i]);
	}
	if (argc > 2 && argv[2][0] == 'l') {
		/* the leader exits; it stays a zombie in /proc/PID/task */
		pthread_t t;
		pthread_create(&t, NULL, serve, (void *)(long)n);
		pthread_exit(NULL);
	}
	serve((void *)(long)n);
	return 0;
}

/* spin: a thread that loops inside a few instructions until released; used
 * to check that a cut refuses when a thread cannot be stepped out of it. */
volatile int spin_release, spin_entered;

NOIPA void spin(void)
{
	spin_entered = 1;
	while (!spin_release)
		;
}
