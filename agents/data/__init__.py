"""Files the agents read at run time, shipped inside the package so an installed wheel has them:
`books.json` (the titles and authors publishers send) and `cassettes/` (the recorded Claude
answers replay mode plays). In a checkout, the top-level `cassettes/` and `fixtures/books.json`
are symlinks to these, so recording writes the files the wheel is built from."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def data_path(*parts: str) -> Path:
    """A file or directory in here, as a real path: vcrpy and the recorder open cassettes by
    path, which a package imported from a zip archive could not give."""
    root = resources.files(__name__)
    if not isinstance(root, Path):
        raise RuntimeError(f"{__name__} is not on the file system ({root!r}); install it unzipped")
    return root.joinpath(*parts)
