"""The hosted git layer's built-in plugin: loading it registers the layer's permissions."""

import pavedroad.git.permissions  # noqa: F401
