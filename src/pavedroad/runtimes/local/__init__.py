"""The local runtime: service instances as supervised processes on 127.0.0.1, reached
through the router at stable URLs (``<component>.<environment>.localhost``)."""
