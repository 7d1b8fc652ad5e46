"""Keyplane: declarative SSO and SCIM for self-hosted platforms, reconciled by a Kopf operator."""

__version__ = "0.1.0"
API_GROUP = "keyplane.dev"
API_VERSION = "v1alpha1"
