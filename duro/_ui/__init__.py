"""``duro ui``: a local web view of one store's instances and histories.

Needs the ``ui`` extra (``pip install 'duro[ui]'``: Starlette, Uvicorn and Jinja2). Nothing
here is imported by ``import duro``; the command line imports it when ``duro ui`` runs.
"""

from __future__ import annotations

from ._app import UiOptions, create_app

__all__ = ["UiOptions", "create_app"]
