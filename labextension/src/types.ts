/**
 * The jupyter-neo REST contract as TypeScript types (no runtime imports, so
 * the model and its tests stay free of JupyterLab).
 *
 * The sidebar translates; it never decides: every rule (placement, prices,
 * validation) lives in the server, which answers `{code, message}` errors.
 */

export type Backend = 'local' | 'kubernetes' | 'slurm' | 'ssh';

export interface ICluster {
  name: string;
  backend: Backend;
  provider: string;
  region: string;
  residency: string[];
  gpu_type: string;
  gpus_per_node: number;
  nodes: number;
  total_gpus: number;
  free_gpus: number;
  price_per_gpu_hour: number;
}

export type ReservationState = 'pending' | 'ready' | 'degraded' | 'released';

export interface IGpuStat {
  index: number;
  util: number | null;
  mem_used?: number;
  mem_total?: number;
}

export interface IPodStats {
  gpus: IGpuStat[];
  loadavg: number[];
}

export interface IPod {
  name: string;
  rank: number;
  address: string;
  state: string;
  gpus: number[];
  stats?: IPodStats | null;
}

export interface IReservation {
  id: string;
  name: string;
  cluster: string;
  state: ReservationState;
  nodes: number;
  gpus_per_node: number;
  gpu_type: string;
  pods: IPod[];
  created: string;
  idle_ttl: number | null;
  expires_at: string | null;
  price_per_hour: number;
  cost: number;
  budget: number | null;
  reason: string | null;
}

export type RunState =
  'starting' | 'running' | 'succeeded' | 'failed' | 'stopped';

export interface IRank {
  rank: number;
  node: number;
  state: string;
  exit_code: number | null;
}

export interface IRun {
  id: string;
  reservation: string;
  command: string[];
  state: RunState;
  started: string;
  ended: string | null;
  exit_code: number | null;
  nodes: number;
  nproc_per_node: number;
  ranks: IRank[];
}

/** Body of `POST reservations`. */
export interface IReserveRequest {
  gpus: number;
  nodes?: number;
  gpu_type?: string;
  cluster?: string;
  region?: string;
  max_price?: number;
  idle_ttl?: string;
  name?: string;
  budget?: number;
}

/** Body of `PATCH reservations/<id>`. */
export interface IReservationPatch {
  idle_ttl?: string;
  budget?: number;
}

export interface ILogTail {
  rank: number;
  lines: string[];
}

/** The payload of the `change/v1` event on the Jupyter event bus. */
export interface IChangeEvent {
  kind: 'reservation' | 'run';
  id: string;
  state: string;
}

export const CHANGE_SCHEMA_ID = 'https://events.jupyter-neo.dev/change/v1';

/** Terminal states: nothing will change them any more. */
export const FINAL_RUN_STATES: ReadonlySet<string> = new Set([
  'succeeded',
  'failed',
  'stopped'
]);
