import gc
import sys

# torch and transformers create millions of long-lived objects on import; the cyclic collector would scan them
# repeatedly while they are created and again afterwards (~0.7 s of a conversion on 2 cores). None is garbage:
# import with collection off, then freeze them out of every later collection.
gc.disable()
from .cli import main  # noqa: E402

gc.freeze()
gc.enable()
sys.exit(main())
