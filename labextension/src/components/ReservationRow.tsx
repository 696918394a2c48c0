import * as React from 'react';

import {
  countdown,
  formatAge,
  formatIdleTtl,
  formatMoney,
  formatRate,
  formatShape
} from '../format';
import type { IReservation } from '../types';
import { PodDots } from './PodDots';
import { ReservationData } from './ReservationData';
import { RowHead } from './RowHead';
import { UtilBars } from './UtilBars';

export interface IReservationActions {
  /** Ask for a new idle TTL and apply it. */
  onExtend: (reservation: IReservation) => Promise<void>;
  /** Ask, then release. */
  onRelease: (reservation: IReservation) => Promise<void>;
}

/**
 * The idle-release countdown. The pods' agents enforce the idle TTL and
 * report their idle time with their stats; the server turns that into
 * `idle_release_at`. A gang busy with a run is never idle.
 */
export function IdleCountdown(props: {
  reservation: IReservation;
  now: number;
}): JSX.Element {
  const r = props.reservation;
  if (r.idle_ttl === null) {
    return (
      <span className="jp-neo-ttl" data-testid="neo-reservation-ttl">
        {formatIdleTtl(null)}
      </span>
    );
  }
  if (r.busy) {
    return (
      <span
        className="jp-neo-ttl"
        data-testid="neo-reservation-ttl"
        title={`${formatIdleTtl(r.idle_ttl)}; a run keeps the gang busy`}
      >
        busy · {formatIdleTtl(r.idle_ttl)}
      </span>
    );
  }
  const left = r.idle_release_at
    ? countdown(r.idle_release_at, props.now)
    : null;
  return (
    <span
      className={left?.urgent ? 'jp-neo-ttl jp-mod-urgent' : 'jp-neo-ttl'}
      title="released by its pods after being idle this long"
      data-testid="neo-reservation-ttl"
    >
      {formatIdleTtl(r.idle_ttl)}
      {left && (
        <span data-testid="neo-reservation-idle-left">
          {' '}
          · release in {left.text}
        </span>
      )}
    </span>
  );
}

/** One held gang: state, pods, shape, $/h, cost, lease and actions. */
export function ReservationRow(
  props: IReservationActions & { reservation: IReservation; now: number }
): JSX.Element {
  const r = props.reservation;
  const budgetLeft = r.deadline ? countdown(r.deadline, props.now) : null;
  const [busy, setBusy] = React.useState(false);
  const act = (fn: () => Promise<void>) => async () => {
    setBusy(true);
    try {
      await fn();
    } finally {
      setBusy(false);
    }
  };
  return (
    <li
      className={`jp-neo-reservation jp-neo-state-${r.state}`}
      data-testid="neo-reservation-row"
      data-reservation-id={r.id}
      data-state={r.state}
    >
      <RowHead
        name={r.name || r.id}
        nameTitle={r.id}
        state={r.state}
        badgeTestid="neo-reservation-state"
      >
        <PodDots pods={r.pods} />
      </RowHead>
      <div className="jp-neo-row-meta">
        <span title="cluster">{r.cluster}</span>
        <span title="nodes × GPUs per node">{formatShape(r)}</span>
        <span
          title="price of the whole gang"
          data-testid="neo-reservation-rate"
        >
          {formatRate(r.price_per_hour)}
        </span>
        <span title="age">{formatAge(r.created, props.now)}</span>
        <IdleCountdown reservation={r} now={props.now} />
        <span title="spent so far" data-testid="neo-reservation-cost">
          {formatMoney(r.cost)}
          {r.budget !== null && ` / ${formatMoney(r.budget)}`}
        </span>
        {budgetLeft && r.state !== 'released' && (
          <span
            className={
              budgetLeft.urgent || r.budget_warned
                ? 'jp-neo-ttl jp-mod-urgent'
                : 'jp-neo-ttl'
            }
            title="released when the budget runs out"
            data-testid="neo-reservation-deadline"
          >
            budget {budgetLeft.text}
          </span>
        )}
      </div>
      {r.reason && <div className="jp-neo-reason">{r.reason}</div>}
      <ReservationData datasets={r.datasets ?? []} />
      <UtilBars pods={r.pods} />
      <div className="jp-neo-actions">
        <button
          className="jp-Button jp-mod-styled jp-mod-minimal jp-neo-small"
          data-testid="neo-reservation-extend"
          disabled={busy}
          onClick={act(() => props.onExtend(r))}
        >
          Extend
        </button>
        <button
          className="jp-Button jp-mod-styled jp-mod-warn jp-neo-small"
          data-testid="neo-reservation-release"
          disabled={busy}
          onClick={act(() => props.onRelease(r))}
        >
          Release
        </button>
      </div>
    </li>
  );
}
