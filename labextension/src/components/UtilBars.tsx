import * as React from 'react';

import { formatMemory, podUtilisation } from '../format';
import type { IPod } from '../types';

/** GPU utilisation per pod, one bar per GPU; nothing without stats. */
export function UtilBars(props: { pods: readonly IPod[] }): JSX.Element | null {
  const withStats = props.pods.filter(p => p.stats && p.stats.gpus.length > 0);
  if (withStats.length === 0) {
    return null;
  }
  return (
    <div className="jp-neo-util" data-testid="neo-util">
      {withStats.map(pod => {
        const mean = podUtilisation(pod);
        return (
          <div key={pod.name} className="jp-neo-util-row">
            <span className="jp-neo-util-label">rank {pod.rank}</span>
            <span className="jp-neo-util-gpus">
              {pod.stats!.gpus.map(g => (
                <span
                  key={g.index}
                  className="jp-neo-util-bar"
                  data-testid="neo-util-bar"
                  title={`GPU ${g.index}: ${
                    g.util === null ? 'n/a' : `${Math.round(g.util)}%`
                  } ${formatMemory(g.mem_used, g.mem_total)}`}
                >
                  <span
                    className="jp-neo-util-fill"
                    style={{
                      width: `${Math.max(0, Math.min(100, g.util ?? 0))}%`
                    }}
                  />
                </span>
              ))}
            </span>
            <span className="jp-neo-util-value">
              {mean === null ? 'n/a' : `${Math.round(mean)}%`}
            </span>
          </div>
        );
      })}
    </div>
  );
}
