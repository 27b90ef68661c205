"""Skip marks for tests that read the real assets under resources/assets (fetched by the workflow).

A fresh clone has none; `make run` fetches the ones the default config uses; others (e.g. the
Brown corpus) only when a config asks for them.  Each test names the assets it reads.
"""

import pytest

from helpers import REPO

ASSETS = REPO / "resources" / "assets"


def needs_assets(*names: str):
    missing = [n for n in names if not (ASSETS / n).is_dir()]
    return pytest.mark.skipif(bool(missing),
                              reason=f"not fetched: {', '.join(f'resources/assets/{n}' for n in missing)} "
                                     "(snakemake resources/assets/<name>)")
