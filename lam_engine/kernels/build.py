"""`python -m lam_engine.kernels.build`: compile the native pass now (the install runs it).

A module of its own, not `-m lam_engine.kernels.native`: that module is imported by the
package itself, and runpy warns when a module it runs is already imported.
"""

import logging
import sys

from .native import main

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(main())
