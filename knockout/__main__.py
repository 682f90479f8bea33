import sys

from knockout.cli import main

sys.exit(main())
