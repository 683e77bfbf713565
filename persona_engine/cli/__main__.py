"""python -m persona_engine.cli"""

import sys

from persona_engine.cli import main

sys.exit(main())
