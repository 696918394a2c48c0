import * as React from 'react';

import type { IReservation } from '../types';
import { IReservationActions, ReservationRow } from './ReservationRow';

/** The live reservations, or a line saying none is held. */
export function Reservations(
  props: IReservationActions & {
    reservations: readonly IReservation[];
    now: number;
  }
): JSX.Element {
  if (props.reservations.length === 0) {
    return (
      <p className="jp-neo-empty" data-testid="neo-no-reservations">
        No GPUs held.
      </p>
    );
  }
  return (
    <ul className="jp-neo-list" data-testid="neo-reservations">
      {props.reservations.map(r => (
        <ReservationRow
          key={r.id}
          reservation={r}
          now={props.now}
          onExtend={props.onExtend}
          onRelease={props.onRelease}
        />
      ))}
    </ul>
  );
}
