"""Keyplane's benchmarks (`make bench`): convergence against a bare-Kopf floor, idle writes, shared
metadata URLs, peak RSS and `keyplane render` time, all against the emulated API server. See README.md."""
