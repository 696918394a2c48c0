import * as React from 'react';

import type { IDataset } from '../types';
import { NameCell, ScrollTable } from './Table';

/** One cell of the matrix: what a cluster can do with a dataset. */
export type DataVerdict = 'held' | 'copy' | 'forbidden';

/** Whether `cluster` holds `dataset`, may receive a copy, or is outside its residency. */
export function dataVerdict(dataset: IDataset, cluster: string): DataVerdict {
  if (dataset.held_by.includes(cluster)) {
    return 'held';
  }
  return dataset.forbidden.includes(cluster) ? 'forbidden' : 'copy';
}

const MARK: Record<DataVerdict, string> = {
  held: '\u25cf',
  copy: '\u2192',
  forbidden: '\u2715'
};

function cellTitle(dataset: IDataset, cluster: string): string {
  const verdict = dataVerdict(dataset, cluster);
  if (verdict === 'held') {
    const loc = dataset.locations.find(l => l.cluster === cluster);
    return `${cluster} holds ${dataset.name}${loc ? `: ${loc.where}` : ''}`;
  }
  if (verdict === 'forbidden') {
    return `${dataset.name} may not leave residency ${dataset.residency.join(', ')}`;
  }
  return `${dataset.name} may be copied to ${cluster} (neo reserve --explain --data ${dataset.name} shows the cost)`;
}

/**
 * Which clusters hold which dataset: one row per dataset (size, residency),
 * one column per cluster; ● holds it, → may receive a copy, ✕ outside its
 * residency (never placed there). The cell's title says where or why.
 */
export function DatasetsView(props: {
  datasets: readonly IDataset[];
  clusters: readonly string[];
}): JSX.Element {
  return (
    <ScrollTable
      testid="neo-datasets"
      rows={props.datasets}
      empty="No datasets configured."
      columns={[
        { label: 'Dataset' },
        { label: 'Residency', title: 'where it may be stored and processed' },
        ...props.clusters.map(c => ({ label: c, className: 'jp-neo-data-col' }))
      ]}
      row={d => (
        <tr key={d.name} data-testid="neo-dataset-row" data-dataset={d.name}>
          <NameCell
            name={d.name}
            sub={d.size_human}
            title={d.description || undefined}
          />
          <td>{d.residency.length ? d.residency.join(', ') : 'anywhere'}</td>
          {props.clusters.map(c => {
            const verdict = dataVerdict(d, c);
            return (
              <td
                key={c}
                className={`jp-neo-data-cell jp-neo-data-${verdict}`}
                data-testid="neo-dataset-cell"
                data-cluster={c}
                data-verdict={verdict}
                title={cellTitle(d, c)}
              >
                {MARK[verdict]}
              </td>
            );
          })}
        </tr>
      )}
    />
  );
}
