"""Settings from the environment and an optional ``.env`` file.

    from monps_store import config
    settings = config.load_settings()          # os.environ, then ./.env for what is unset
    settings = config.from_url("postgresql://app:secret@db:5432/monps")

The variables are the ones existing deployments already use (see ``.env.example``).
``load_settings`` reports every missing or invalid variable in one :class:`ConfigError`.
Passwords are held in :class:`Secret`, which prints as ``***`` in ``repr``, ``str``, logs and
f-strings; only :meth:`Settings.connect_params` reveals it, to hand it to the driver.

Three modules, one concern each: :mod:`.settings` the value, :mod:`.urls` URLs and
``db.init()`` arguments, :mod:`.environment` the environment and ``.env``.
"""

from monps_store.config.environment import load_settings
from monps_store.config.settings import (
    ISOLATION_LEVELS,
    MASK,
    POOLERS,
    Secret,
    Settings,
    check_ranges,
)
from monps_store.config.urls import (
    URL_SCHEMES,
    from_init_params,
    from_url,
    isolation_level,
    parse_url,
    with_replicas,
)
from monps_store.errors import ConfigError

__all__ = ["ISOLATION_LEVELS", "MASK", "POOLERS", "URL_SCHEMES", "ConfigError", "Secret",
           "Settings", "check_ranges", "from_init_params", "from_url", "isolation_level",
           "load_settings", "parse_url", "with_replicas"]
