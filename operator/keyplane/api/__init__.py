"""API models of Keyplane's custom resources: the single source of truth for the CRDs."""
