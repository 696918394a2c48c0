/**
 * @jest-environment jsdom
 */
import { render, screen } from '@testing-library/react';
import * as React from 'react';

import { DatasetsView, dataVerdict } from '../../components/DatasetsView';
import type { IDataset } from '../../types';

function dataset(over: Partial<IDataset> = {}): IDataset {
  return {
    name: 'clinical-eu',
    description: '',
    size: 2e12,
    size_human: '2.0 TB',
    residency: ['eu'],
    locations: [
      {
        cluster: 'nebius-fi',
        backend: 'local',
        region: 'eu-north1',
        kind: 'path',
        where: 'path /srv/clinical'
      }
    ],
    bucket: null,
    held_by: ['nebius-fi'],
    copyable_to: ['coreweave-de'],
    forbidden: ['lambda-us'],
    ...over
  };
}

const CLUSTERS = ['lambda-us', 'nebius-fi', 'coreweave-de'];

describe('DatasetsView', () => {
  it('shows per cluster whether it holds the data, may get a copy, or is outside its residency', () => {
    render(
      <DatasetsView
        datasets={[
          dataset(),
          dataset({
            name: 'web',
            residency: [],
            size_human: '500.0 GB',
            locations: [],
            held_by: [],
            copyable_to: CLUSTERS,
            forbidden: []
          })
        ]}
        clusters={CLUSTERS}
      />
    );
    const rows = screen.getAllByTestId('neo-dataset-row');
    expect(rows.map(r => r.dataset.dataset)).toEqual(['clinical-eu', 'web']);
    expect(rows[0].textContent).toContain('2.0 TB');
    expect(rows[1].textContent).toContain('anywhere');
    const cells = screen.getAllByTestId('neo-dataset-cell');
    expect(cells.slice(0, 3).map(c => c.dataset.verdict)).toEqual([
      'forbidden',
      'held',
      'copy'
    ]);
    expect(cells.slice(3).map(c => c.dataset.verdict)).toEqual([
      'copy',
      'copy',
      'copy'
    ]);
    expect(cells[0].title).toBe('clinical-eu may not leave residency eu');
    expect(cells[1].title).toBe(
      'nebius-fi holds clinical-eu: path /srv/clinical'
    );
  });

  it('says when no dataset is configured', () => {
    render(<DatasetsView datasets={[]} clusters={CLUSTERS} />);
    expect(screen.getByText('No datasets configured.')).toBeTruthy();
  });

  it('decides a cell from the server document alone', () => {
    const d = dataset();
    expect(dataVerdict(d, 'nebius-fi')).toBe('held');
    expect(dataVerdict(d, 'lambda-us')).toBe('forbidden');
    expect(dataVerdict(d, 'somewhere-new')).toBe('copy');
  });
});
