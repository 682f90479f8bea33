// SPDX-License-Identifier: GPL-2.0
/*
 * planted_load.c - TEST ONLY: the user side of tests/vm/planted_kmod/planted.c.
 *
 *   planted_load write FILE USEC   forever: write one byte to FILE, sleep USEC
 *   planted_load rate FILE SECONDS print the requests FILE served per second
 *                                  over SECONDS (its number read at both ends)
 *
 * The writer sleeps between requests, so when the chain's cost is cut the
 * machine goes idle instead of making sys time out of cheap syscalls.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

static long served(const char *path)
{
	FILE *f = fopen(path, "r");
	long n = -1;

	if (!f || fscanf(f, "%ld", &n) != 1) {
		perror(path);
		exit(1);
	}
	fclose(f);
	return n;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "write")) {
		int fd = open(argv[2], O_WRONLY);
		long usec = atol(argv[3]);

		if (fd < 0) {
			perror(argv[2]);
			return 1;
		}
		for (;;) {
			if (write(fd, "r", 1) < 0) {
				perror("write");
				return 1;
			}
			if (usec > 0)
				usleep(usec);
		}
	}
	if (argc == 4 && !strcmp(argv[1], "rate")) {
		double t0 = now(), t1;
		long n0 = served(argv[2]), n1;

		usleep((useconds_t)(atof(argv[3]) * 1e6));
		n1 = served(argv[2]);
		t1 = now();
		printf("%.6g\n", (n1 - n0) / (t1 - t0));
		return 0;
	}
	fprintf(stderr, "usage: planted_load write FILE USEC | rate FILE SECONDS\n");
	return 2;
}
