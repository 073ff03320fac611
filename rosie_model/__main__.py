"""``python -m rosie_model COMMAND`` (see :mod:`rosie_model.cli`)."""

import sys

from rosie_model.cli import main

sys.exit(main())
