import sys

from thrifty.providers.emulator.cli import main

sys.exit(main())
