import sys

from tfrec_dyn.cli import main

sys.exit(main())
