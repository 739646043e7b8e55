"""`v2l serve`: a local web page and a versioned JSON API over the same library calls as the CLI (`service`), in a
FastAPI app with a bounded request gate, upload caps and one-sentence errors (`app`)."""

from .app import OPERATIONS, create_app
from .service import Service

__all__ = ["OPERATIONS", "Service", "create_app"]
