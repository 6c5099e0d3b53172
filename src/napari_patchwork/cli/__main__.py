"""``python -m napari_patchwork.cli``."""

import sys

from napari_patchwork.cli import main

sys.exit(main())
