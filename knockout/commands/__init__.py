"""One module per ``knockout`` subcommand; see :mod:`knockout.cli`."""
