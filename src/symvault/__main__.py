import sys

from symvault.cli import main

sys.exit(main())
