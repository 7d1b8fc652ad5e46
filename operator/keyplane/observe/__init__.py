"""Observe: the I/O that feeds the pure reconcile (documents, referenced objects, owned Secrets)."""
