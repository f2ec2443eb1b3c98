import sys

from sedlm.cli import main

sys.exit(main())
