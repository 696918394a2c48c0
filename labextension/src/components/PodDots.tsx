import * as React from 'react';

import type { IPod } from '../types';

/** One dot per pod, coloured by its state. */
export function PodDots(props: { pods: readonly IPod[] }): JSX.Element {
  return (
    <span className="jp-neo-pod-dots">
      {props.pods.map(p => (
        <span
          key={p.name}
          className={`jp-neo-dot jp-neo-state-${p.state}`}
          data-testid="neo-pod-dot"
          data-state={p.state}
          title={`rank ${p.rank} · ${p.name} · ${p.address || 'no address'} · ${p.state}`}
        />
      ))}
    </span>
  );
}
