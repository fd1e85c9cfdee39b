import sys

from .malloc_choice import reexec_with_chosen_malloc

reexec_with_chosen_malloc()  # before torch loads: a malloc is chosen at process start (malloc_choice.py says why)

from .cli import main  # noqa: E402  (imported after the re-exec check on purpose)

sys.exit(main())
