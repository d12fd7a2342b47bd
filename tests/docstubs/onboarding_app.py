"""Stands in for the application module the deployment docs import registrations from."""

from __future__ import annotations

import duro

registry = duro.Registry()
