"""Prefect flows over `hardmine.pipeline`: the bootstrap loop, one mining round, schedules.

Importing this package sets Prefect's offline-safe defaults (unless the environment already
sets them): no analytics, and a startup timeout for the ephemeral API server that survives a
cold first start on 2 cores (its first database migration takes longer than the default 20 s).
"""

import os

OFFLINE_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}
for _name, _value in OFFLINE_DEFAULTS.items():
    os.environ.setdefault(_name, _value)
