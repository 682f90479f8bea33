/* The README's example program: it spends its time in burn() and says how fast it goes.
 *
 *   burn RATEFILE    loop: burn() then count; every 0.2 s write the calls per second to RATEFILE
 *
 * Build it like production code: gcc -O2 -g -o burn burn.c
 */
#include <stdio.h>
#include <time.h>

static volatile unsigned long sink;

__attribute__((noinline)) unsigned long burn(unsigned long x)
{
	for (int i = 0; i < 200000; i++)
		x = x * 6364136223846793005UL + 1442695040888963407UL;
	return x;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double start = now();
	long calls = 0;
	if (argc < 2)
		return 2;
	for (;;) {
		sink = burn(sink) + 1;
		calls++;
		double t = now();
		if (t - start >= 0.2) {
			FILE *f = fopen(argv[1], "w");
			if (f) {
				fprintf(f, "%.1f\n", calls / (t - start));
				fclose(f);
			}
			start = t;
			calls = 0;
		}
	}
}
