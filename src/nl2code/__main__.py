import sys

from nl2code.cli import main

sys.exit(main())
