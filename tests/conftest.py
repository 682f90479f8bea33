"""Settings every tier shares."""

from __future__ import annotations

import signal


def pytest_configure() -> None:
    """Let the tests' children take SIGINT even when ``make test`` runs as a background job.

    A shell without job control starts background commands with SIGINT ignored,
    and an ignored signal stays ignored across exec: the knockout processes the
    tests stop with SIGINT (as a user's Ctrl-C would) never saw it, and the tests
    timed out (a fresh-clone run started with ``(make test &)``).  A handled
    signal is reset to its default on exec, so a handler here gives each child
    Python's own SIGINT behaviour again.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
