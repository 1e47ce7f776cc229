"""``python -m ${{ values.module }}``: serve on the port in $PORT (default ${{ values.port }})."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from .app import make_server

DEFAULT_PORT = ${{ values.port }}


def configured_port(environ: Mapping[str, str]) -> int:
    """The port to listen on: $PORT if set, else the default."""
    return int(environ.get("PORT") or DEFAULT_PORT)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    port = configured_port(os.environ)
    server = make_server(port=port)
    logging.info("${{ values.name }} listening on port %d", port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
