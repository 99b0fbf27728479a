"""`python -m cryocloud.agent CONTROL_DIR`: the lean entry backends launch (no CLI import)."""

import sys

from cryocloud.agent.runner import main

raise SystemExit(main(sys.argv[1:]))
