/**
 * The sidebar's model: what the server knows about clusters, reservations and
 * runs, kept fresh by the event bus (fast) and a slow lumino Poll (fallback).
 *
 * The merging rules are pure functions so they can be tested alone:
 * - a full list from REST replaces the list, except for items an event has
 *   touched since that request went out (the event is newer);
 * - an event updates the state of a known item at once and asks for its
 *   full body; an unknown id is fetched; a released reservation leaves.
 */
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import type { INeoClient } from './client';
import { NeoAPIError } from './errors';
import { LogFollower } from './logs';
import type {
  ICluster,
  IChangeEvent,
  IDataset,
  IPreview,
  IReservation,
  IReserveRequest,
  IRun
} from './types';
import { CHANGE_SCHEMA_ID } from './types';

/** Where the model stands with the server. */
export type ConnectionStatus =
  /** Nothing heard yet. */
  | 'loading'
  | 'ok'
  /** 404 on `clusters`: the server extension is not installed or enabled. */
  | 'missing'
  /** The Jupyter server cannot be reached. */
  | 'offline'
  /** Some other error; see `error`. */
  | 'error';

interface IHasId {
  id: string;
}

/**
 * Replace `current` by `snapshot`, except for ids in `keep` (touched by an
 * event after the snapshot was requested), whose current version wins —
 * including their absence, and their presence when the snapshot lacks them.
 */
export function mergeSnapshot<T extends IHasId>(
  current: readonly T[],
  snapshot: readonly T[],
  keep: ReadonlySet<string>
): T[] {
  if (keep.size === 0) {
    return [...snapshot];
  }
  const byId = new Map(current.map(item => [item.id, item]));
  const out: T[] = [];
  const seen = new Set<string>();
  for (const item of snapshot) {
    seen.add(item.id);
    if (keep.has(item.id)) {
      const mine = byId.get(item.id);
      if (mine) {
        out.push(mine);
      }
    } else {
      out.push(item);
    }
  }
  for (const item of current) {
    if (keep.has(item.id) && !seen.has(item.id)) {
      out.push(item);
    }
  }
  return out;
}

/** Insert or replace `item` by id, keeping the order of the list. */
export function upsert<T extends IHasId>(list: readonly T[], item: T): T[] {
  const i = list.findIndex(x => x.id === item.id);
  if (i < 0) {
    return [...list, item];
  }
  const out = [...list];
  out[i] = item;
  return out;
}

/** Remove an id. */
export function without<T extends IHasId>(list: readonly T[], id: string): T[] {
  return list.filter(x => x.id !== id);
}

/** Runs newest first (by start time, then id: ids sort by time too). */
export function newestFirst(list: readonly IRun[]): IRun[] {
  return [...list].sort((a, b) => {
    const ta = Date.parse(a.started) || 0;
    const tb = Date.parse(b.started) || 0;
    return tb - ta || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);
  });
}

/** Reservations the sidebar lists: the ones not released. */
export function liveReservations(
  list: readonly IReservation[]
): IReservation[] {
  return list.filter(r => r.state !== 'released');
}

/**
 * Apply a state change from the event bus to a list, at once and without a
 * round trip. Returns the new list and whether the item must be fetched
 * (unknown, or known but its body is now stale).
 */
export function applyChange<T extends IHasId & { state: string }>(
  list: readonly T[],
  event: IChangeEvent,
  dropStates: ReadonlySet<string> = new Set()
): { list: T[]; fetch: boolean } {
  if (dropStates.has(event.state)) {
    return { list: without(list, event.id), fetch: false };
  }
  const known = list.find(x => x.id === event.id);
  if (!known) {
    return { list: [...list], fetch: true };
  }
  const updated = { ...known, state: event.state } as T;
  return { list: upsert(list, updated), fetch: true };
}

/**
 * Read a `change/v1` event from an event-bus emission. JupyterLab hands the
 * fields at the top level (`schema_id`, `kind`, `id`, `state`); a nested
 * `data` object is accepted too.
 */
export function parseChangeEvent(emission: unknown): IChangeEvent | null {
  if (!emission || typeof emission !== 'object') {
    return null;
  }
  const e = emission as Record<string, unknown>;
  const schema = e.schema_id ?? e.__schema__;
  if (schema !== CHANGE_SCHEMA_ID) {
    return null;
  }
  const data = (e.data && typeof e.data === 'object' ? e.data : e) as Record<
    string,
    unknown
  >;
  const { kind, id, state } = data;
  if (
    (kind !== 'reservation' && kind !== 'run') ||
    typeof id !== 'string' ||
    typeof state !== 'string'
  ) {
    return null;
  }
  return { kind, id, state };
}

const DROP_RESERVATION = new Set(['released']);

export namespace NeoModel {
  export interface IOptions {
    client: INeoClient;
    /** Fallback poll period in ms (default 15 s). */
    interval?: number;
    /** Longest backoff in ms when the server fails (default 5 min). */
    maxInterval?: number;
    /** Delay in ms before clusters are re-read after a change (300). */
    clustersDelay?: number;
    /** When the poll stands by; default: when the page is hidden. */
    standby?: Poll.Standby | (() => boolean | Poll.Standby);
    /** Log tail poll period in ms while a run is active (default 2 s). */
    logInterval?: number;
  }

  /** The user-settable intervals (schema/plugin.json), in seconds. */
  export interface ISettings {
    refreshInterval?: number;
    logInterval?: number;
  }
}

/** The state of jupyter-neo as the sidebar shows it. */
export class NeoModel {
  constructor(options: NeoModel.IOptions) {
    this.client = options.client;
    this._clustersDelay = options.clustersDelay ?? 300;
    this.poll = new Poll({
      auto: false,
      factory: () => this.refresh(),
      frequency: {
        interval: options.interval ?? 15000,
        backoff: true,
        max: options.maxInterval ?? 300000
      },
      name: 'jupyter-neo:refresh',
      standby: options.standby ?? 'when-hidden'
    });
    this.logs = new LogFollower({
      fetch: (id, rank, tail) => this.client.logs(id, rank, tail),
      interval: options.logInterval
    });
    this.logs.changed.connect(() => this._changed.emit());
  }

  readonly client: INeoClient;
  readonly poll: Poll;
  /** The open run's log tail (one at a time), polled through this model. */
  readonly logs: LogFollower;

  /** Apply the settings: poll periods in seconds. */
  configure(settings: NeoModel.ISettings): void {
    if (settings.refreshInterval && settings.refreshInterval > 0) {
      this.poll.frequency = {
        ...this.poll.frequency,
        interval: settings.refreshInterval * 1000
      };
    }
    if (settings.logInterval && settings.logInterval > 0) {
      this.logs.interval = settings.logInterval * 1000;
    }
  }

  /** Price a request without reserving (the form's preview). */
  preview(request: IReserveRequest): Promise<IPreview> {
    return this.client.preview(request);
  }

  /** Emitted whenever anything shown may have changed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get clusters(): readonly ICluster[] {
    return this._clusters;
  }

  /** Configured datasets: read once (the server reads its configuration once). */
  get datasets(): readonly IDataset[] {
    return this._datasets;
  }

  /** Reservations not yet released, in server order. */
  get reservations(): readonly IReservation[] {
    return this._reservations;
  }

  /** Runs, newest first. */
  get runs(): readonly IRun[] {
    return this._runs;
  }

  get status(): ConnectionStatus {
    return this._status;
  }

  /** The last error message, when status is 'error' or 'offline'. */
  get error(): string {
    return this._error;
  }

  /** GPUs held by live reservations. */
  get heldGpus(): number {
    return this._reservations.reduce(
      (n, r) => n + r.nodes * r.gpus_per_node,
      0
    );
  }

  /** USD per hour of live reservations. */
  get pricePerHour(): number {
    return this._reservations.reduce((n, r) => n + (r.price_per_hour || 0), 0);
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Start the fallback poll (its first tick refreshes at once). */
  start(): Promise<void> {
    return this.poll.start();
  }

  /**
   * Fetch clusters, reservations and runs. Rejects when the server fails, so
   * the poll backs off.
   */
  async refresh(): Promise<void> {
    const since = this._seq;
    try {
      const [clusters, reservations, runs] = await Promise.all([
        this.client.clusters(),
        this.client.reservations(),
        this.client.runs()
      ]);
      if (this._disposed) {
        return;
      }
      const keep = this._touchedSince(since);
      this._clusters = clusters;
      this._reservations = liveReservations(
        mergeSnapshot(this._reservations, reservations, keep)
      );
      this._runs = newestFirst(mergeSnapshot(this._runs, runs, keep));
      if (!this._datasetsLoaded && this.client.datasets) {
        this._datasets = await this.client.datasets();
        this._datasetsLoaded = true;
      }
      this._setStatus('ok', '');
    } catch (error) {
      if (this._disposed) {
        return;
      }
      if (error instanceof NeoAPIError && error.status === 404) {
        this._setStatus('missing', error.message);
      } else if (error instanceof NeoAPIError) {
        this._setStatus('error', error.message);
      } else {
        this._setStatus('offline', String((error as Error)?.message ?? error));
      }
      throw error;
    }
  }

  /** Handle an emission from `app.serviceManager.events.stream`. */
  handleEmission(emission: unknown): void {
    const event = parseChangeEvent(emission);
    if (event) {
      this.applyEvent(event);
    }
  }

  /** Apply a change event now, then fetch the item it names. */
  applyEvent(event: IChangeEvent): void {
    if (this._disposed) {
      return;
    }
    this._touch(event.id);
    let fetch: boolean;
    if (event.kind === 'reservation') {
      const result = applyChange(this._reservations, event, DROP_RESERVATION);
      this._reservations = result.list;
      fetch = result.fetch;
    } else {
      const result = applyChange(this._runs, event);
      this._runs = newestFirst(result.list);
      fetch = result.fetch;
    }
    this._changed.emit();
    if (fetch) {
      void this._fetchOne(event).catch(() => undefined);
    }
    if (event.kind === 'reservation') {
      this._clustersSoon();
    }
  }

  /** Reserve a gang; the new reservation appears at once. */
  async reserve(request: IReserveRequest): Promise<IReservation> {
    const reservation = await this.client.reserve(request);
    this._put(reservation);
    return reservation;
  }

  /** Change the idle TTL (or budget) of a reservation. */
  async extend(id: string, idleTtl: string): Promise<IReservation> {
    const reservation = await this.client.patchReservation(id, {
      idle_ttl: idleTtl
    });
    this._put(reservation);
    return reservation;
  }

  /** Release a reservation; it leaves the list. */
  async release(id: string): Promise<IReservation> {
    const reservation = await this.client.release(id);
    this._put(reservation);
    return reservation;
  }

  /** Release every live reservation; returns the ids that failed. */
  async releaseAll(): Promise<{ id: string; error: string }[]> {
    const ids = this._reservations.map(r => r.id);
    const failed: { id: string; error: string }[] = [];
    await Promise.all(
      ids.map(id =>
        this.release(id).catch(error => {
          failed.push({ id, error: String(error?.message ?? error) });
        })
      )
    );
    return failed;
  }

  /** Stop a run. */
  async stopRun(id: string): Promise<IRun> {
    const run = await this.client.stopRun(id);
    this._runs = newestFirst(upsert(this._runs, run));
    this._touch(id);
    this._changed.emit();
    return run;
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    if (this._clustersTimer !== null) {
      clearTimeout(this._clustersTimer);
      this._clustersTimer = null;
    }
    this.poll.dispose();
    this.logs.dispose();
    Signal.clearData(this);
  }

  private _put(reservation: IReservation): void {
    this._touch(reservation.id);
    this._reservations =
      reservation.state === 'released'
        ? without(this._reservations, reservation.id)
        : upsert(this._reservations, reservation);
    this._changed.emit();
    this._clustersSoon();
  }

  /**
   * Free GPUs change with every reservation: fetch the clusters once after a
   * burst of changes.
   */
  private _clustersSoon(): void {
    if (this._clustersTimer !== null || this._disposed) {
      return;
    }
    this._clustersTimer = setTimeout(async () => {
      this._clustersTimer = null;
      try {
        const clusters = await this.client.clusters();
        if (!this._disposed) {
          this._clusters = clusters;
          this._changed.emit();
        }
      } catch {
        // The next poll tick reports the failure.
      }
    }, this._clustersDelay);
  }

  private async _fetchOne(event: IChangeEvent): Promise<void> {
    const mark = this._touched.get(event.id);
    if (event.kind === 'reservation') {
      const reservation = await this.client.reservation(event.id);
      if (!this._disposed && this._touched.get(event.id) === mark) {
        this._put(reservation);
      }
    } else {
      const run = await this.client.run(event.id);
      if (!this._disposed && this._touched.get(event.id) === mark) {
        this._touch(run.id);
        this._runs = newestFirst(upsert(this._runs, run));
        this._changed.emit();
      }
    }
  }

  /** Mark `id` as changed by an event or an action, newer than any list. */
  private _touch(id: string): void {
    this._touched.set(id, ++this._seq);
  }

  /**
   * Ids touched after mark `since` (taken when a list request went out):
   * their local version is newer than the list. Older marks are forgotten.
   */
  private _touchedSince(since: number): Set<string> {
    const keep = new Set<string>();
    for (const [id, at] of this._touched) {
      if (at > since) {
        keep.add(id);
      } else {
        this._touched.delete(id);
      }
    }
    return keep;
  }

  private _setStatus(status: ConnectionStatus, error: string): void {
    this._status = status;
    this._error = error;
    this._changed.emit();
  }

  private _clusters: ICluster[] = [];
  private _datasets: IDataset[] = [];
  private _datasetsLoaded = false;
  private _reservations: IReservation[] = [];
  private _runs: IRun[] = [];
  private _status: ConnectionStatus = 'loading';
  private _error = '';
  private _seq = 0;
  private _touched = new Map<string, number>();
  private _disposed = false;
  private _clustersTimer: ReturnType<typeof setTimeout> | null = null;
  private _clustersDelay: number;
  private _changed = new Signal<this, void>(this);
}
