import sys

from runtime.main import main

sys.exit(main())
