"""`python -m refine_perception.training` is `refine-train` (and what `torchrun -m` launches)."""

import sys

from refine_perception.training.cli import main

sys.exit(main())
