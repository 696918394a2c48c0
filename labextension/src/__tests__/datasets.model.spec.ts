import type { INeoClient } from '../client';
import { NeoModel } from '../model';
import type { IDataset } from '../types';
import { cluster } from './fixtures';

const CLINICAL: IDataset = {
  name: 'clinical-eu',
  description: '',
  size: 2e12,
  size_human: '2.0 TB',
  residency: ['eu'],
  locations: [],
  bucket: null,
  held_by: ['local'],
  copyable_to: [],
  forbidden: []
};

describe('NeoModel datasets', () => {
  it('reads the configured datasets once, with the first refresh', async () => {
    const datasets = jest.fn(async () => [CLINICAL]);
    const client = {
      clusters: async () => [cluster()],
      reservations: async () => [],
      runs: async () => [],
      datasets
    } as unknown as INeoClient;
    const model = new NeoModel({ client, standby: 'never' });
    expect(model.datasets).toEqual([]);
    await model.refresh();
    await model.refresh();
    expect(model.datasets.map(d => d.name)).toEqual(['clinical-eu']);
    expect(datasets).toHaveBeenCalledTimes(1);
    model.dispose();
  });

  it('works with a client that has no datasets endpoint', async () => {
    const client = {
      clusters: async () => [cluster()],
      reservations: async () => [],
      runs: async () => []
    } as unknown as INeoClient;
    const model = new NeoModel({ client, standby: 'never' });
    await model.refresh();
    expect(model.status).toBe('ok');
    expect(model.datasets).toEqual([]);
    model.dispose();
  });
});
