import * as React from 'react';

import { formatMoney } from '../format';
import type { ICluster } from '../types';
import { type IColumn, NameCell, ScrollTable } from './Table';

/** Short backend names for the narrow clusters table. */
const BACKEND_SHORT: Record<string, string> = { kubernetes: 'k8s' };

const COLUMNS: readonly IColumn[] = [
  { label: 'Cluster', title: 'name and backend' },
  { label: 'Region' },
  { label: 'GPU' },
  { label: 'Free', title: 'free / total GPUs' },
  { label: '$/GPU-h', title: 'USD per GPU-hour' }
];

/**
 * Clusters with their free GPUs and price. The table scrolls sideways in its
 * own box when the panel is narrow, so the price column is never cut off.
 */
export function ClustersTable(props: {
  clusters: readonly ICluster[];
}): JSX.Element {
  return (
    <ScrollTable
      testid="neo-clusters"
      rows={props.clusters}
      empty="No clusters configured."
      columns={COLUMNS}
      row={c => (
        <tr
          key={c.name}
          className="jp-neo-cluster-row"
          data-testid="neo-cluster-row"
          data-cluster={c.name}
          title={`${c.provider} · ${c.nodes} nodes × ${c.gpus_per_node} GPUs${
            c.residency.length ? ` · residency ${c.residency.join(', ')}` : ''
          }`}
        >
          <NameCell
            name={c.name}
            sub={BACKEND_SHORT[c.backend] ?? c.backend}
            subTestid="neo-cluster-backend"
          />
          <td>{c.region || '\u2014'}</td>
          <td>{c.gpu_type}</td>
          <td className="jp-neo-num">
            {c.free_gpus}/{c.total_gpus}
          </td>
          <td className="jp-neo-num" data-testid="neo-cluster-price">
            {formatMoney(c.price_per_gpu_hour)}
          </td>
        </tr>
      )}
    />
  );
}
