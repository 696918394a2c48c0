/**
 * @jest-environment jsdom
 */
import { render, screen } from '@testing-library/react';
import * as React from 'react';

import { ClustersTable } from '../../components/ClustersTable';
import { cluster } from '../fixtures';

describe('ClustersTable', () => {
  it('lists every cluster with free GPUs and the price per GPU-hour', () => {
    render(
      <ClustersTable
        clusters={[
          cluster(),
          cluster({ name: 'k8s-us', backend: 'kubernetes', free_gpus: 0 })
        ]}
      />
    );
    const rows = screen.getAllByTestId('neo-cluster-row');
    expect(rows.map(r => r.dataset.cluster)).toEqual(['local', 'k8s-us']);
    expect(rows[1].textContent).toContain('k8s');
    expect(rows[1].textContent).toContain('0/32');
    expect(screen.getAllByTestId('neo-cluster-price')[0].textContent).toBe(
      '$2.49'
    );
  });

  it('says when no cluster is configured', () => {
    render(<ClustersTable clusters={[]} />);
    expect(screen.getByText('No clusters configured.')).toBeTruthy();
  });
});
