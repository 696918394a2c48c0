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

export type PodState = 'pending' | 'ready' | 'lost' | 'released';

export interface IPod {
  name: string;
  rank: number;
  address: string;
  state: PodState;
  gpus: number[];
  stats?: IPodStats | null;
}

/**
 * A reservation as the server writes it (`Reservation.public()` in
 * `jupyter_neo/model.py`). The idle TTL is enforced by each pod's agent,
 * which alone knows the last activity: the server gives the TTL itself
 * (`idle_ttl`, seconds), not an expiry time. `deadline` is when the budget
 * runs out.
 */
export interface IReservation {
  id: string;
  name: string | null;
  cluster: string;
  backend: Backend;
  state: ReservationState;
  nodes: number;
  gpus_per_node: number;
  gpu_type: string;
  pods: IPod[];
  created: string;
  ready_at: string | null;
  released_at: string | null;
  idle_ttl: number | null;
  budget: number | null;
  price_per_hour: number;
  owner: string;
  reason: string | null;
  deadline: string | null;
  budget_warned: boolean;
  cost: number;
  budget_used: number | null;
  /**
   * When the pods release themselves if nothing happens (from the agents'
   * last activity; live views only, null when unknown or without a TTL).
   */
  idle_release_at?: string | null;
  /** A run keeps the gang busy: the idle clock does not run. */
  busy?: boolean;
  /** The datasets it asked for (`--data`): where ranks find them. */
  datasets?: IDatasetUse[];
}

/** A dataset a reservation holds, or the copy it would take (docs/datasets.md). */
export interface IDatasetUse {
  name: string;
  read_only: boolean;
  present: boolean;
  /** Where ranks find it (also `NEO_DATA_<NAME>`); null when absent. */
  path: string | null;
}

/** One place a dataset lives (`GET /datasets`). */
export interface IDatasetLocation {
  cluster: string;
  backend: string;
  region: string;
  kind: 'path' | 'pvc' | 'nfs' | 'host_path';
  /** e.g. `path /srv/clinical`, `pvc clinical-ro`. */
  where: string;
}

/** A configured dataset and where it may go (`GET /datasets`). */
export interface IDataset {
  name: string;
  description: string;
  size: number;
  size_human: string;
  /** Where it may be stored and processed; empty = anywhere. */
  residency: string[];
  locations: IDatasetLocation[];
  bucket: { url: string; region: string; provider?: string } | null;
  held_by: string[];
  copyable_to: string[];
  /** Clusters outside its residency: it is never placed there. */
  forbidden: string[];
}

export type RunState =
  'starting' | 'running' | 'succeeded' | 'failed' | 'stopped' | 'lost';

export interface IRank {
  rank: number;
  node: number;
  local_rank: number;
  state: RunState;
  exit_code: number | null;
  log: string;
  /** The process's life: starting, importing, running, exited. */
  phase?: RankPhase;
}

export type RankPhase = 'starting' | 'importing' | 'running' | 'exited';

/** A run as the server writes it (`Run.public()` in `jupyter_neo/model.py`). */
export interface IRun {
  id: string;
  reservation: string;
  command: string[];
  kind: 'script' | 'module' | 'cmd' | 'check';
  launcher: 'torchrun' | 'plain';
  state: RunState;
  nodes: number;
  nproc_per_node: number;
  started: string;
  ended: string | null;
  exit_code: number | null;
  ranks: IRank[];
  /** Seconds from start to end (or to now while running). */
  duration: number;
  owner: string;
  /** Why the run failed, with the failing rank's last lines. */
  error: string | null;
  failed_node: number | null;
  failed_rank: number | null;
  /** One line on how the run started (cold/hot and why). */
  note: string | null;
  /** A readable name (a notebook cell's runs: `cell [3]: train(...)`). */
  label?: string | null;
  /** A hot iteration that was not applied, and why (the workers kept the old code). */
  not_applied?: string | null;
  /** `jupyter_neo.log(...)` records from the ranks: rank, step, time and named values. */
  metrics?: Array<Record<string, number | string>>;
}

/** `GET placement/preview`: what a reservation would be and cost. */
export interface IPreview {
  cluster: string;
  nodes: number;
  gpus_per_node: number;
  gpu_type: string;
  price_per_hour: number;
  idle_ttl: number | null;
  /** USD an unused gang costs before its idle release (null: no TTL). */
  idle_cost: number | null;
  /** `2 × 8 H100 on lambda-us: $39.84/h, idle release after 30m ≈ $19.92 if unused` */
  text: string;
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
  'stopped',
  'lost'
]);
