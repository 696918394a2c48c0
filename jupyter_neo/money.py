"""Budgets, spend caps and the workspace policy file: the money rules every surface shares.

- A reservation's ``budget`` (USD) becomes a *deadline*: price per hour x time = budget. The pods'
  agents stop by themselves at that deadline, so a closed laptop cannot overspend.
- A per-user cap (``defaults.user_budget`` in the config) bounds spend over a rolling 30 days;
  a new reservation's budget is cut to what the cap leaves.
- A budget too small to last even one idle period is refused up front, with the arithmetic:
  such a gang would be cut by its budget before it could ever be released for being idle.
- ``neo.yaml`` in the workspace may require residency tags, a max price and a default budget,
  and name the datasets its runs need (``datasets: [imagenet]``, used when ``--data`` is not given).
- Every amount of money from any surface is read by :data:`USD` / :func:`parse_usd`: a finite
  number above 0 and at most :data:`MAX_USD` (never ``nan``, ``inf`` or ``true``), so a typo
  cannot become a deadline ``datetime`` cannot hold.

The cap is enforced where the reservation's record is first written (:meth:`Store.save_reservation`
calls :func:`admit` inside the transaction that writes it, the same one in which the local backend
takes capacity) and where a budget is raised (:meth:`Store.change_budget`), so concurrent
reservations and extensions are serialised by the store and cannot together exceed the cap.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from jupyter_neo.durations import MAX_SECONDS
from jupyter_neo.errors import ConfigError, InvalidRequest

if TYPE_CHECKING:
    from jupyter_neo.model import Reservation

WARN_FRACTION = 0.8
SPEND_WINDOW = 30 * 86400.0
POLICY_FILE = "neo.yaml"
MAX_USD = 1e9
"""The largest amount accepted anywhere: a billion dollars is no one's typo-free budget."""


def _plain_number(value: object) -> object:
    # JSON ``true`` is not a number of dollars, although Python counts it as 1; ``nan``/``inf``
    # (also as the strings a CLI or a query passes) are refused before any range check.
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    if isinstance(value, str | int | float):
        try:
            number = float(value)
        except (ValueError, OverflowError):
            return value  # pydantic names what is wrong with it
        if not math.isfinite(number):
            raise ValueError("must be a finite number")
    return value


USD = Annotated[float, BeforeValidator(_plain_number), Field(gt=0, le=MAX_USD, allow_inf_nan=False)]
"""An amount of money (budget, price cap) as every model field declares it."""
_USD = TypeAdapter(USD)


def parse_usd(value: object, what: str = "budget") -> float:
    """``value`` as USD, or a one-line :class:`InvalidRequest` naming ``what`` and the fix."""
    try:
        return float(_USD.validate_python(value))
    except ValidationError as exc:
        msg = exc.errors()[0]["msg"].lower()
        raise InvalidRequest(
            f"{what}: {msg} (got {value!r})", f"give a number of USD above 0, at most {MAX_USD:,.0f}"
        ) from None


class _PolicyDoc(BaseModel):
    model_config = ConfigDict(extra="ignore")
    residency: list[str] = Field(default_factory=list)
    max_price: USD | None = None
    budget: USD | None = None
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
            f"your spending cap of {money(user_cap)} per 30 days is used up "
            f"({money(spent)} spent or committed to your live reservations' budgets)",
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
    """When ``budget`` runs out at this price; None without a budget or price.

    A budget lasting longer than :data:`MAX_SECONDS` is held to that horizon (a cheap cluster
    and a large budget would otherwise overflow ``datetime``).
    """
    if budget is None or price_per_hour <= 0:
        return None
    seconds = budget / price_per_hour * 3600.0
    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        seconds = MAX_SECONDS
    return created + timedelta(seconds=seconds)


def exposure(cost_in_window: float, cost_total: float, budget: float | None, live: bool) -> float:
    """What a reservation counts against the per-user cap: spent in the window plus what it may
    still spend (its budget's remainder) while it is live. A live reservation without a budget
    (made before the cap was configured) can only count what it has spent so far."""
    if not live or budget is None:
        return cost_in_window
    return cost_in_window + max(0.0, budget - cost_total)


def admit(
    requested: float | None,
    user_cap: float | None,
    committed: float,
    price_per_hour: float,
    idle_ttl: float | None,
) -> float | None:
    """The budget a new reservation may have: what was asked, cut to what the cap leaves after
    everything already ``committed`` (spent in the window plus live reservations' remaining
    budgets); refused when that could not even cover one idle period."""
    budget = effective_budget(requested, user_cap, committed)
    check_affordable(budget, price_per_hour, idle_ttl)
    return budget


def check_raise(
    new_budget: float, user_cap: float | None, committed_others: float, spent_here: float
) -> None:
    """Refuse a budget change that would exceed the user's cap, or that is already spent."""
    if new_budget <= spent_here:
        raise InvalidRequest(
            f"a budget of {money(new_budget)} is already spent ({money(spent_here)} so far)",
            f"give more than {money(spent_here)}, or release the reservation",
        )
    if user_cap is not None and committed_others + new_budget > user_cap + 1e-9:
        left = max(0.0, user_cap - committed_others)
        raise InvalidRequest(
            f"a budget of {money(new_budget)} would exceed your spending cap of {money(user_cap)} per 30 days "
            f"({money(committed_others)} is spent or committed by your other reservations)",
            f"give at most {money(left)}, or raise defaults.user_budget",
        )


def window_start(days: float | None = None) -> float:
    return time.time() - (days * 86400.0 if days is not None else SPEND_WINDOW)


def short_duration(seconds: float) -> str:
    """A lease as people say it: ``30m``, ``1h``, ``1h30m``, ``2d``, ``45s``."""
    s = int(max(0, seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size or (unit == "s" and not parts):
            count, s = divmod(s, size)
            if count or not parts:
                parts.append(f"{count}{unit}")
    return "".join(parts)


def idle_cost(price_per_hour: float, idle_ttl: float | None) -> float | None:
    """What a gang costs if nobody uses it before its idle release (None: it is never released)."""
    return round(price_per_hour * idle_ttl / 3600.0, 2) if idle_ttl else None


TIMES = "\u00d7"


def offer(
    cluster: str,
    *,
    nodes: int,
    gpus_per_node: int,
    gpu_type: str,
    price_per_hour: float,
    idle_ttl: float | None,
) -> str:
    """The one sentence every surface shows before (or as) a gang is reserved.

    ``2 x 8 H100 on lambda-us: $39.84/h, idle release after 30m ≈ $19.92 if unused`` (with a
    multiplication sign): the price and what an unused gang costs, so nothing is spent silently.
    """
    head = f"{nodes} {TIMES} {gpus_per_node} {gpu_type} on {cluster}: {money(price_per_hour)}/h"
    cost = idle_cost(price_per_hour, idle_ttl)
    if idle_ttl is None or cost is None:
        return f"{head}, no idle release: it bills until released"
    return f"{head}, idle release after {short_duration(idle_ttl)} ≈ {money(cost)} if unused"


def new_gang_notice(res: Reservation, command: str = "neo") -> str:
    """What a run that reserved its own gang says at once: where, what it costs, how it ends
    (the CLI's stderr, the notebook widget's notice): no silent spending."""
    text = offer(
        res.cluster,
        nodes=res.nodes,
        gpus_per_node=res.gpus_per_node,
        gpu_type=res.gpu_type,
        price_per_hour=res.price_per_hour,
        idle_ttl=res.idle_ttl,
    )
    return f"reserved a new gang {res.id}: {text}; it stays warm for the next run ({command} release {res.id} stops it)"
