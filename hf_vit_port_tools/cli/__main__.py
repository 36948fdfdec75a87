"""`python -m hf_vit_port_tools.cli ...` is `hf-vit-port ...` (for launchers such as `torchrun -m`)."""

import sys

from . import main

sys.exit(main())
