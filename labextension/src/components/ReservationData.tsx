import * as React from 'react';

import type { IDatasetUse } from '../types';

/**
 * The datasets a reservation holds (`--data`): where ranks find each one
 * (also `NEO_DATA_<NAME>`), read-only or writable; an absent one is the copy
 * placement estimated but jupyter-neo does not perform.
 */
export function ReservationData(props: {
  datasets: readonly IDatasetUse[];
}): JSX.Element | null {
  if (props.datasets.length === 0) {
    return null;
  }
  return (
    <div className="jp-neo-row-data" data-testid="neo-reservation-data">
      {props.datasets.map(d => (
        <span
          key={d.name}
          className={d.present ? 'jp-neo-data-held' : 'jp-neo-data-copy'}
          title={
            d.present
              ? `${d.path} (${d.read_only ? 'read-only' : 'writable'})`
              : `${d.name} is not on this cluster: copy it there first`
          }
          data-testid="neo-reservation-dataset"
        >
          {d.name} {d.present ? (d.read_only ? 'ro' : 'rw') : '(absent)'}
        </span>
      ))}
    </div>
  );
}
