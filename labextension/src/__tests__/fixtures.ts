import type { ICluster, IReservation, IRun } from '../types';

export function cluster(over: Partial<ICluster> = {}): ICluster {
  return {
    name: 'local',
    backend: 'local',
    provider: 'on-prem',
    region: 'eu-west',
    residency: ['eu'],
    gpu_type: 'H100',
    gpus_per_node: 8,
    nodes: 4,
    total_gpus: 32,
    free_gpus: 16,
    price_per_gpu_hour: 2.49,
    ...over
  };
}

export function reservation(over: Partial<IReservation> = {}): IReservation {
  return {
    id: 'r-1',
    name: '',
    cluster: 'local',
    state: 'pending',
    nodes: 2,
    gpus_per_node: 8,
    gpu_type: 'H100',
    pods: [
      {
        name: 'r-1-0',
        rank: 0,
        address: '10.0.0.1',
        state: 'pending',
        gpus: []
      },
      {
        name: 'r-1-1',
        rank: 1,
        address: '10.0.0.2',
        state: 'pending',
        gpus: []
      }
    ],
    created: '2026-11-29T10:00:00Z',
    idle_ttl: 1800,
    expires_at: '2026-11-29T10:30:00Z',
    price_per_hour: 39.84,
    cost: 0,
    budget: null,
    reason: null,
    ...over
  };
}

export function run(over: Partial<IRun> = {}): IRun {
  return {
    id: 'run-1',
    reservation: 'r-1',
    command: ['train.py', '--lr', '3e-4'],
    state: 'running',
    started: '2026-11-29T10:01:00Z',
    ended: null,
    exit_code: null,
    nodes: 2,
    nproc_per_node: 8,
    ranks: [],
    ...over
  };
}
