import sys

from mlplat.cli import main

sys.exit(main())
