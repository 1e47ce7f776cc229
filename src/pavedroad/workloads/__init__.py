"""Score workloads: how a service runs, read from its ``score.yaml``.

- :mod:`~pavedroad.workloads.score` reads and checks a Score file (``parse_workload``);
- :mod:`~pavedroad.workloads.template` is the ``${...}`` placeholder syntax;
- :mod:`~pavedroad.workloads.placeholders` expands placeholders with resources' outputs
  (``resolve_workload``), keeping track of which values are secret;
- :mod:`~pavedroad.workloads.resources` holds the resource types (from plugins, through
  the ``pavedroad_resource_types`` hook) and provisions a workload's resources;
- :mod:`~pavedroad.workloads.containers` gives a runtime one container's environment and
  writes its files.

The deployments layer (:mod:`pavedroad.environments`) puts them together; runtimes only
see resolved workloads.
"""
