"""`python -m conversion convert ...` (from a checkout) and `python -m hf_vit_port_tools.conversion`: `hf-vit-port`."""

import sys

from hf_vit_port_tools.cli import main

sys.exit(main())
