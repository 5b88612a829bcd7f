import sys

from ssb.cli import main

sys.exit(main())
