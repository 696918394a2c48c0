import type { ICluster, IPreview, IReservation, IRun } from '../types';

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
    name: null,
    cluster: 'local',
    backend: 'local',
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
    ready_at: null,
    released_at: null,
    idle_ttl: 1800,
    budget: null,
    price_per_hour: 39.84,
    owner: 'alice',
    reason: null,
    deadline: null,
    budget_warned: false,
    cost: 0,
    budget_used: null,
    ...over
  };
}

export function run(over: Partial<IRun> = {}): IRun {
  return {
    id: 'run-1',
    reservation: 'r-1',
    command: ['train.py', '--lr', '3e-4'],
    kind: 'script',
    launcher: 'torchrun',
    state: 'running',
    started: '2026-11-29T10:01:00Z',
    ended: null,
    exit_code: null,
    nodes: 2,
    nproc_per_node: 8,
    ranks: [],
    duration: 0,
    owner: 'alice',
    error: null,
    failed_node: null,
    failed_rank: null,
    note: null,
    ...over
  };
}

export function preview(over: Partial<IPreview> = {}): IPreview {
  return {
    cluster: 'lambda-us',
    nodes: 2,
    gpus_per_node: 8,
    gpu_type: 'H100',
    price_per_hour: 39.84,
    idle_ttl: 1800,
    idle_cost: 19.92,
    text: '2 \u00d7 8 H100 on lambda-us: $39.84/h, idle release after 30m \u2248 $19.92 if unused',
    ...over
  };
}
