import sys

from drimcheck.cli import main

sys.exit(main())
