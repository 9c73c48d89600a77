import sys

from refine_perception.cli.main import main

sys.exit(main())
