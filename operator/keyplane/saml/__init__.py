"""Pure SAML helpers: hardened XML parsing, IdP metadata, certificates, signatures, SP settings.

No Kopf, no network, no Kubernetes: everything here is a function of its arguments.
"""
