"""Kopf handlers: importing this package registers them in Kopf's default registry."""

from . import kopf_handlers, lifecycle, login

__all__ = ["kopf_handlers", "lifecycle", "login"]
