import * as React from 'react';

import { formatMoney } from '../format';
import type { ICluster } from '../types';

/** Short backend names for the narrow clusters table. */
const BACKEND_SHORT: Record<string, string> = { kubernetes: 'k8s' };

/**
 * Clusters with their free GPUs and price. The table scrolls sideways in its
 * own box when the panel is narrow, so the price column is never cut off.
 */
export function ClustersTable(props: {
  clusters: readonly ICluster[];
}): JSX.Element {
  if (props.clusters.length === 0) {
    return <p className="jp-neo-empty">No clusters configured.</p>;
  }
  return (
    <div className="jp-neo-table-wrap">
      <table className="jp-neo-table" data-testid="neo-clusters">
        <thead>
          <tr>
            <th title="name and backend">Cluster</th>
            <th>Region</th>
            <th>GPU</th>
            <th title="free / total GPUs">Free</th>
            <th title="USD per GPU-hour">$/GPU-h</th>
          </tr>
        </thead>
        <tbody>
          {props.clusters.map(c => (
            <tr
              key={c.name}
              className="jp-neo-cluster-row"
              data-testid="neo-cluster-row"
              data-cluster={c.name}
              title={`${c.provider} · ${c.nodes} nodes × ${c.gpus_per_node} GPUs${
                c.residency.length
                  ? ` · residency ${c.residency.join(', ')}`
                  : ''
              }`}
            >
              <td>
                <div className="jp-neo-cluster-name">{c.name}</div>
                <div className="jp-neo-sub" data-testid="neo-cluster-backend">
                  {BACKEND_SHORT[c.backend] ?? c.backend}
                </div>
              </td>
              <td>{c.region || '\u2014'}</td>
              <td>{c.gpu_type}</td>
              <td className="jp-neo-num">
                {c.free_gpus}/{c.total_gpus}
              </td>
              <td className="jp-neo-num" data-testid="neo-cluster-price">
                {formatMoney(c.price_per_gpu_hour)}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
