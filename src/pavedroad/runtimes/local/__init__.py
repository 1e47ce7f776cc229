"""The local runtime: service instances as supervised processes on 127.0.0.1."""
