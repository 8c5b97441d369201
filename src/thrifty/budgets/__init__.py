"""Hard budgets and rate limits: reserve a call's worst case before it goes out, settle after.

`limits` is the configuration, `windows` the calendar windows, `scopes` which counters a call
belongs to, `estimate` the worst case of a request, `backend` the store interface with two
stores (`memory` for one replica, `redis_backend` for several), `enforcer` the facade, `alerts`
the webhook sender and `stage` the pipeline stage.
"""

from thrifty.budgets.enforcer import Applied, Enforcer, Reservation, open_store
from thrifty.errors import BudgetExceeded, BudgetUnavailable
from thrifty.budgets.estimate import Estimate, Estimator
from thrifty.budgets.limits import (
    BackendConfig, BudgetConfig, BudgetsConfig, EstimateConfig, RateLimitConfig,
)
from thrifty.budgets.scopes import CallScopes, key_id
from thrifty.budgets.windows import window_bounds

__all__ = [
    "Applied",
    "BackendConfig",
    "BudgetConfig",
    "BudgetExceeded",
    "BudgetUnavailable",
    "BudgetsConfig",
    "CallScopes",
    "Enforcer",
    "Estimate",
    "EstimateConfig",
    "Estimator",
    "RateLimitConfig",
    "Reservation",
    "key_id",
    "open_store",
    "window_bounds",
]
