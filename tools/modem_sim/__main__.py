"""`python -m modem_sim` from tools/ (same as tools/modem_sim/run.py)."""
import sys

from .run import main

sys.exit(main())
