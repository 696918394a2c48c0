"""Budgets, spend caps and the workspace policy file: the money rules every surface shares.

- A reservation's ``budget`` (USD) becomes a *deadline*: price per hour x time = budget. The pods'
  agents stop by themselves at that deadline, so a closed laptop cannot overspend.
- A per-user cap (``defaults.user_budget`` in the config) bounds spend over a rolling 30 days;
  a new reservation's budget is cut to what the cap leaves.
- A budget too small to last even one idle period is refused up front, with the arithmetic:
  such a gang would be cut by its budget before it could ever be released for being idle.
- ``neo.yaml`` in the workspace may require residency tags, a max price and a default budget,
  and name the datasets its runs need (``datasets: [imagenet]``, used when ``--data`` is not given).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jupyter_neo.errors import ConfigError, InvalidRequest

WARN_FRACTION = 0.8
SPEND_WINDOW = 30 * 86400.0
POLICY_FILE = "neo.yaml"


class _PolicyDoc(BaseModel):
    model_config = ConfigDict(extra="ignore")
    residency: list[str] = Field(default_factory=list)
    max_price: float | None = Field(default=None, gt=0)
    budget: float | None = Field(default=None, gt=0)
    datasets: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class Policy:
    """Placement and spending rules a workspace declares for every reservation made from it."""

    residency: list[str] = field(default_factory=list)
    max_price: float | None = None
    budget: float | None = None
    source: Path | None = None
    datasets: list[str] = field(default_factory=list)


def load_policy(workspace: Path) -> Policy:
    path = workspace / POLICY_FILE
    if not path.is_file():
        return Policy()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        doc = _PolicyDoc.model_validate(data.get("policy", data) if isinstance(data, dict) else {})
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(
            f"{path}: invalid policy ({str(exc).splitlines()[0]})",
            "it may set residency: [tags], max_price: USD/GPU-h, budget: USD, datasets: [names]",
        ) from None
    return Policy(
        residency=doc.residency,
        max_price=doc.max_price,
        budget=doc.budget,
        source=path,
        datasets=doc.datasets,
    )


def money(usd: float) -> str:
    """USD for people: cents, or four decimals for sums under a cent (a fresh reservation)."""
    return f"${usd:,.2f}" if usd >= 0.01 or usd == 0 else f"${usd:.4f}"


def effective_budget(requested: float | None, user_cap: float | None, spent: float) -> float | None:
    """The budget a new reservation gets: what was asked, cut to what the user's cap leaves."""
    if user_cap is None:
        return requested
    left = user_cap - spent
    if left <= 0:
        raise InvalidRequest(
            f"your spending cap of {money(user_cap)} per 30 days is used up ({money(spent)} spent)",
            "release idle reservations (neo cost shows where it went) or raise defaults.user_budget",
        )
    return min(requested, left) if requested is not None else left


def check_affordable(budget: float | None, price_per_hour: float, idle_ttl: float | None) -> None:
    """Refuse a budget that could not even cover one idle period at this price."""
    if budget is None or price_per_hour <= 0 or not idle_ttl:
        return
    need = idle_ttl
    lasts = budget / price_per_hour * 3600.0
    if lasts < need:
        raise InvalidRequest(
            f"a budget of {money(budget)} lasts {lasts:.0f}s at {money(price_per_hour)}/h "
            f"({money(budget)} / {money(price_per_hour)}/h), less than the {need:.0f}s idle TTL",
            f"raise --budget to at least {money(price_per_hour * need / 3600.0)} or shorten --idle-ttl",
        )


def deadline_for(created: datetime, budget: float | None, price_per_hour: float) -> datetime | None:
    if budget is None or price_per_hour <= 0:
        return None
    return created + timedelta(hours=budget / price_per_hour)


def window_start(days: float | None = None) -> float:
    return time.time() - (days * 86400.0 if days is not None else SPEND_WINDOW)
