"""Generated programs with a planted culprit: a chain of calls where one frame makes the cost.

``chain_source(seed)`` writes a server (the shape of tests/fixtures/planted.c)
whose request handler calls a chain of 3-8 functions with random names.  One
frame of the chain, the culprit, loops until the frames below it report
enough progress; the leaf does the work and reports one unit per call.  When
any frame below the culprit is cut (returns 0), no progress comes back and
the culprit spins the same cost itself: cutting a leaf only moves the heat.
Cutting the culprit (or anything above it) removes the cost.

Built -O2 without frame pointers; every chain function is ``noinline``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Branchy", "Chain", "branchy_source", "chain_source"]


@dataclass(frozen=True)
class Chain:
    """A generated program: its C source, the chain (caller first) and the culprit."""

    source: str
    names: tuple[str, ...]  # handler's callee first, leaf last
    culprit: str


_SERVER = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define UNITS 24
#define WORK 60000

static volatile unsigned long sink;

static void work(void)
{
	unsigned long x = sink;
	for (int i = 0; i < WORK; i++)
		x = x * 6364136223846793005UL + 1442695040888963407UL;
	sink = x;
}

%(functions)s

static int connect_to(const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	strncpy(addr.sun_path, path, sizeof(addr.sun_path) - 1);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	for (int tries = 0; tries < 100; tries++) {
		if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
			return fd;
		usleep(20000);
	}
	perror("connect");
	exit(1);
}

static int serve(const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	struct pollfd fds[65];
	int n = 1;
	strncpy(addr.sun_path, path, sizeof(addr.sun_path) - 1);
	unlink(path);
	fds[0].fd = socket(AF_UNIX, SOCK_STREAM, 0);
	fds[0].events = POLLIN;
	if (bind(fds[0].fd, (struct sockaddr *)&addr, sizeof(addr)) || listen(fds[0].fd, 16))
		return 1;
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		if (poll(fds, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		for (int i = n - 1; i >= 1; i--) {
			char c;
			if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			if (read(fds[i].fd, &c, 1) == 1) {
				sink += %(top)s(c);
				c = 'k';
				if (send(fds[i].fd, &c, 1, MSG_NOSIGNAL) == 1)
					continue;
			}
			close(fds[i].fd);
			fds[i] = fds[--n];
		}
		if ((fds[0].revents & POLLIN) && n <= 64) {
			int fd = accept(fds[0].fd, NULL, NULL);
			if (fd >= 0) {
				fds[n].fd = fd;
				fds[n].events = POLLIN;
				n++;
			}
		}
	}
}

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "server"))
		return serve(argv[2]);
	if (argc >= 4 && !strcmp(argv[1], "client")) {
		int fd = connect_to(argv[2]);
		for (long i = atol(argv[3]); i > 0; i--) {
			char c = 'r';
			if (write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1)
				return 1;
		}
		return 0;
	}
	if (argc >= 4 && !strcmp(argv[1], "hammer")) {
		int fd = connect_to(argv[2]);
		for (;;) {
			char c = 'r';
			if (write(fd, &c, 1) != 1 || read(fd, &c, 1) != 1)
				return 1;
			usleep(atoi(argv[3]) * 1000);
		}
	}
	return 2;
}
"""


def _name(rng: random.Random) -> str:
    return "fn_" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8))


def chain_source(seed: int) -> Chain:
    """A program with a chain of 3-8 frames, the culprit somewhere above the leaf."""
    rng = random.Random(seed)
    depth = rng.randint(3, 8)
    names = tuple(_name(rng) for _ in range(depth))
    culprit_at = rng.randint(0, depth - 2)  # never the leaf
    parts = []
    for i in range(depth - 1, -1, -1):  # leaf first, so every callee is defined before use
        name = names[i]
        if i == depth - 1:
            body = "\twork();\n\treturn 1;"
        elif i == culprit_at:
            body = (
                "\tlong done = 0;\n"
                "\tfor (int tries = 0; done < UNITS && tries < UNITS; tries++) {\n"
                f"\t\tlong got = {names[i + 1]}(key);\n"
                "\t\tif (got <= 0)\n\t\t\twork(); /* no progress: spin, the same cost */\n"
                "\t\tdone += got > 0 ? got : 1;\n\t}\n\treturn done;"
            )
        else:  # not a tail call: every frame stays on the stack
            body = f"\tlong got = {names[i + 1]}(key);\n\tsink ^= got;\n\treturn got;"
        parts.append(f"__attribute__((noinline)) long {name}(char key)\n{{\n{body}\n}}\n")
    source = _SERVER % {"functions": "\n".join(parts), "top": names[0]}
    return Chain(source, names, names[culprit_at])


@dataclass(frozen=True)
class Branchy:
    """A generated program whose cost sits behind a branch in the middle of a long function."""

    source: str
    function: str
    cost_line: int  # the source line of the costly call


def branchy_source(seed: int, statements: int = 40) -> Branchy:
    """The server with ``handle`` -> a long function doing ``statements`` small steps, one of
    which (somewhere in the middle) calls the costly function behind a branch."""
    rng = random.Random(seed)
    name, costly = _name(rng), _name(rng)
    at = rng.randint(statements // 3, 2 * statements // 3)
    body = []
    for i in range(statements):
        if i == at:
            body.append("\tif (key == 'r')\n\t\tacc += COSTLY(acc);")
        body.append(f"\tacc = acc * {rng.randint(3, 10**9) | 1}UL + {i};\n\tsink = acc;")
    text = "\n".join(body)
    functions = (
        f"__attribute__((noinline)) long {costly}(unsigned long x)\n{{\n"
        "\tfor (int i = 0; i < UNITS; i++)\n\t\twork();\n\treturn (long)(x & 1);\n}\n\n"
        f"__attribute__((noinline)) long {name}(char key)\n{{\n"
        f"\tunsigned long acc = sink;\n{text.replace('COSTLY', costly)}\n\treturn (long)acc;\n}}\n"
    )
    source = _SERVER % {"functions": functions, "top": name}
    line = next(n for n, ln in enumerate(source.splitlines(), 1) if f"acc += {costly}(" in ln)
    return Branchy(source, name, line)
