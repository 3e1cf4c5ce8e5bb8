import sys

from diffbio_prob.cli import main

sys.exit(main())
