import sys

from thrifty_emulator.cli import main

sys.exit(main())
