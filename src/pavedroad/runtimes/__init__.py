"""Where deployed services run: the local process runtime (and, later, Kubernetes)."""
