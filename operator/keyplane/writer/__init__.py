"""The operator's writes, apart from Kopf: the namespace writer (statuses, the bundle Secret, the SP
metadata ConfigMaps), Deployment rolling and Event posting.

Everything here writes through a `ClusterStore`: the API server when the operator runs, the in-memory
store when `keyplane render` runs the same pass, so render prints exactly what the operator writes.
"""
