"""How users spell the operator's settings, for refusal messages that name the setting to change.

Every setting is a flag ``--<kebab-case>``, an environment variable ``KEYPLANE_<UPPER_SNAKE>``
(keyplane/settings.py) and, for those the chart exposes, a Helm value under ``config:``.
"""

from __future__ import annotations

#: The Helm value (under ``config:`` in helm/keyplane/values.yaml) of each setting a refusal points at.
HELM_VALUES = {
    "allow_private_networks": "allowPrivateNetworks",
    "allow_insecure_http": "allowInsecureHTTP",
    "metadata_max_bytes": "metadataMaxBytes",
    "metadata_timeout": "metadataTimeout",
    "metadata_connect_timeout": "metadataConnectTimeout",
}


def setting_hint(field: str) -> str:
    """E.g. ``--allow-insecure-http (Helm config.allowInsecureHTTP, KEYPLANE_ALLOW_INSECURE_HTTP)``."""
    flag = "--" + field.replace("_", "-")
    helm = HELM_VALUES.get(field)
    where = f"Helm config.{helm}, " if helm else ""
    return f"{flag} ({where}KEYPLANE_{field.upper()})"
