import type { INeoClient } from '../client';
import { NeoAPIError } from '../errors';
import {
  NeoModel,
  applyChange,
  mergeSnapshot,
  parseChangeEvent,
  upsert
} from '../model';
import type { ICluster, IReservation, IRun } from '../types';
import { CHANGE_SCHEMA_ID } from '../types';
import { cluster, reservation, run } from './fixtures';

/** A controllable fake of the REST API. */
class FakeClient implements INeoClient {
  clustersList: ICluster[] = [cluster()];
  reservationsList: IReservation[] = [];
  runsList: IRun[] = [];
  calls: string[] = [];
  failWith: Error | null = null;
  /** When set, list requests wait for this promise. */
  gate: Promise<void> | null = null;

  private async _list<T>(name: string, value: () => T): Promise<T> {
    this.calls.push(name);
    if (this.gate) {
      await this.gate;
    }
    if (this.failWith) {
      throw this.failWith;
    }
    return value();
  }

  clusters() {
    return this._list('clusters', () => this.clustersList);
  }
  reservations() {
    return this._list('reservations', () => this.reservationsList);
  }
  runs() {
    return this._list('runs', () => this.runsList);
  }
  async reservation(id: string) {
    this.calls.push(`reservation ${id}`);
    const found = this.reservationsList.find(r => r.id === id);
    if (!found) {
      throw new NeoAPIError(404, 'not_found', `no reservation ${id}`);
    }
    return found;
  }
  async run(id: string) {
    this.calls.push(`run ${id}`);
    const found = this.runsList.find(r => r.id === id);
    if (!found) {
      throw new NeoAPIError(404, 'not_found', `no run ${id}`);
    }
    return found;
  }
  async reserve(request: { gpus: number }) {
    this.calls.push(`reserve ${request.gpus}`);
    if (request.gpus > 64) {
      throw new NeoAPIError(409, 'no_capacity', 'no cluster has 128 free H100');
    }
    const r = reservation({ id: 'r-new', state: 'pending' });
    this.reservationsList = [...this.reservationsList, r];
    return r;
  }
  async patchReservation(id: string, patch: { idle_ttl?: string }) {
    this.calls.push(`patch ${id} ${patch.idle_ttl}`);
    return reservation({ id, state: 'ready', idle_ttl: 3600 });
  }
  async release(id: string) {
    this.calls.push(`release ${id}`);
    if (id === 'r-stuck') {
      throw new NeoAPIError(409, 'busy', 'cannot release r-stuck now');
    }
    this.reservationsList = this.reservationsList.filter(r => r.id !== id);
    return reservation({ id, state: 'released' });
  }
  async stopRun(id: string) {
    this.calls.push(`stop ${id}`);
    return run({ id, state: 'stopped', exit_code: -15 });
  }
  async logs(id: string, rank: number) {
    return { rank, lines: [`log of ${id}`] };
  }
}

function makeModel(client = new FakeClient()) {
  return {
    client,
    model: new NeoModel({ client, standby: 'never', clustersDelay: 0 })
  };
}

/** Let pending promise callbacks run. */
const flush = () => new Promise(resolve => setTimeout(resolve, 0));

describe('merge helpers', () => {
  const a = reservation({ id: 'a', state: 'ready' });
  const b = reservation({ id: 'b', state: 'pending' });

  it('upserts by id in place or at the end', () => {
    const b2 = { ...b, state: 'ready' as const };
    expect(upsert([a, b], b2)).toEqual([a, b2]);
    expect(upsert([a], b)).toEqual([a, b]);
  });

  it('takes the snapshot when nothing was touched', () => {
    expect(mergeSnapshot([a], [b], new Set())).toEqual([b]);
  });

  it('keeps touched items over an older snapshot', () => {
    const aNewer = { ...a, state: 'degraded' as const };
    const snapshot = [a, b];
    expect(mergeSnapshot([aNewer], snapshot, new Set(['a', 'b']))).toEqual([
      aNewer
    ]);
  });

  it('keeps a touched item the snapshot does not know yet', () => {
    expect(mergeSnapshot([a, b], [a], new Set(['b']))).toEqual([a, b]);
  });

  it('applies a change event to a known item and asks to fetch it', () => {
    const result = applyChange([a, b], {
      kind: 'reservation',
      id: 'b',
      state: 'ready'
    });
    expect(result.fetch).toBe(true);
    expect(result.list.map(r => r.state)).toEqual(['ready', 'ready']);
  });

  it('asks to fetch an unknown id without inventing an item', () => {
    const result = applyChange([a], {
      kind: 'reservation',
      id: 'z',
      state: 'pending'
    });
    expect(result).toEqual({ list: [a], fetch: true });
  });

  it('drops items that reach a dropped state', () => {
    const result = applyChange(
      [a, b],
      { kind: 'reservation', id: 'a', state: 'released' },
      new Set(['released'])
    );
    expect(result).toEqual({ list: [b], fetch: false });
  });

  it('parses change events from the event bus', () => {
    const event = { kind: 'run', id: 'run-1', state: 'failed' };
    expect(parseChangeEvent({ schema_id: CHANGE_SCHEMA_ID, ...event })).toEqual(
      event
    );
    expect(
      parseChangeEvent({ schema_id: CHANGE_SCHEMA_ID, data: event })
    ).toEqual(event);
    expect(parseChangeEvent({ schema_id: 'other', ...event })).toBeNull();
    expect(
      parseChangeEvent({
        schema_id: CHANGE_SCHEMA_ID,
        kind: 'pod',
        id: 'x',
        state: 'y'
      })
    ).toBeNull();
    expect(parseChangeEvent(null)).toBeNull();
  });
});

describe('NeoModel', () => {
  it('loads clusters, live reservations and runs', async () => {
    const { client, model } = makeModel();
    client.reservationsList = [
      reservation({ id: 'r-1', state: 'ready' }),
      reservation({ id: 'r-0', state: 'released' })
    ];
    client.runsList = [run()];
    const changed = jest.fn();
    model.changed.connect(changed);

    await model.refresh();

    expect(model.status).toBe('ok');
    expect(model.clusters).toHaveLength(1);
    expect(model.reservations.map(r => r.id)).toEqual(['r-1']);
    expect(model.runs).toHaveLength(1);
    expect(model.heldGpus).toBe(16);
    expect(model.pricePerHour).toBeCloseTo(39.84);
    expect(changed).toHaveBeenCalled();
    model.dispose();
  });

  it('says the server extension is missing on a 404', async () => {
    const { client, model } = makeModel();
    client.failWith = new NeoAPIError(404, 'http_404', 'Not Found');
    await expect(model.refresh()).rejects.toThrow('Not Found');
    expect(model.status).toBe('missing');
    model.dispose();
  });

  it('says offline when the server cannot be reached', async () => {
    const { client, model } = makeModel();
    client.failWith = new TypeError('Failed to fetch');
    await expect(model.refresh()).rejects.toThrow();
    expect(model.status).toBe('offline');
    client.failWith = null;
    await model.refresh();
    expect(model.status).toBe('ok');
    model.dispose();
  });

  it('applies events at once, then fetches the full item', async () => {
    const { client, model } = makeModel();
    client.reservationsList = [reservation({ id: 'r-1', state: 'pending' })];
    await model.refresh();

    const ready = reservation({
      id: 'r-1',
      state: 'ready',
      pods: reservation().pods.map(p => ({ ...p, state: 'ready' }))
    });
    client.reservationsList = [ready];
    model.handleEmission({
      schema_id: CHANGE_SCHEMA_ID,
      kind: 'reservation',
      id: 'r-1',
      state: 'ready'
    });
    // The state changes before any request returns...
    expect(model.reservations[0].state).toBe('ready');
    expect(model.reservations[0].pods[0].state).toBe('pending');
    await flush();
    // ...and the fetched body brings the pods.
    expect(client.calls).toContain('reservation r-1');
    expect(model.reservations[0].pods.every(p => p.state === 'ready')).toBe(
      true
    );
    model.dispose();
  });

  it('adds an unknown reservation announced by an event', async () => {
    const { client, model } = makeModel();
    await model.refresh();
    client.reservationsList = [reservation({ id: 'r-cli', state: 'pending' })];
    model.applyEvent({ kind: 'reservation', id: 'r-cli', state: 'pending' });
    expect(model.reservations).toHaveLength(0);
    await flush();
    expect(model.reservations.map(r => r.id)).toEqual(['r-cli']);
    model.dispose();
  });

  it('removes a reservation released elsewhere without fetching it', async () => {
    const { client, model } = makeModel();
    client.reservationsList = [reservation({ id: 'r-1', state: 'ready' })];
    await model.refresh();
    client.calls = [];
    model.applyEvent({ kind: 'reservation', id: 'r-1', state: 'released' });
    expect(model.reservations).toHaveLength(0);
    await flush();
    // Only the clusters are re-read (their free GPUs changed).
    expect(client.calls).toEqual(['clusters']);
    model.dispose();
  });

  it('updates runs from events', async () => {
    const { client, model } = makeModel();
    client.runsList = [run({ id: 'run-1', state: 'running' })];
    await model.refresh();
    client.runsList = [run({ id: 'run-1', state: 'failed', exit_code: 1 })];
    model.applyEvent({ kind: 'run', id: 'run-1', state: 'failed' });
    expect(model.runs[0].state).toBe('failed');
    await flush();
    expect(model.runs[0].exit_code).toBe(1);
    model.dispose();
  });

  it('does not let a list that was requested before an event undo it', async () => {
    const { client, model } = makeModel();
    client.reservationsList = [reservation({ id: 'r-1', state: 'pending' })];
    await model.refresh();

    // A refresh goes out and is slow; the server answers the old state.
    let open!: () => void;
    client.gate = new Promise<void>(resolve => (open = resolve));
    const slow = model.refresh();
    // Meanwhile the event says it was released.
    model.applyEvent({ kind: 'reservation', id: 'r-1', state: 'released' });
    open();
    await slow;
    expect(model.reservations).toHaveLength(0);

    // A later refresh is newer than the event and wins again.
    client.gate = null;
    client.reservationsList = [reservation({ id: 'r-2', state: 'ready' })];
    await model.refresh();
    expect(model.reservations.map(r => r.id)).toEqual(['r-2']);
    model.dispose();
  });

  it('reserves, extends and releases', async () => {
    const { client, model } = makeModel();
    await model.refresh();

    const r = await model.reserve({ gpus: 16, nodes: 2 });
    expect(model.reservations.map(x => x.id)).toEqual([r.id]);

    await model.extend(r.id, '1h');
    expect(client.calls).toContain(`patch ${r.id} 1h`);
    expect(model.reservations[0].idle_ttl).toBe(3600);

    await model.release(r.id);
    expect(model.reservations).toHaveLength(0);
    model.dispose();
  });

  it('passes the server message of a refused reservation', async () => {
    const { model } = makeModel();
    await expect(model.reserve({ gpus: 128 })).rejects.toMatchObject({
      status: 409,
      code: 'no_capacity',
      message: 'no cluster has 128 free H100'
    });
    expect(model.reservations).toHaveLength(0);
    model.dispose();
  });

  it('releases all and reports the ones that failed', async () => {
    const { client, model } = makeModel();
    client.reservationsList = [
      reservation({ id: 'r-1', state: 'ready' }),
      reservation({ id: 'r-stuck', state: 'ready' }),
      reservation({ id: 'r-3', state: 'degraded' })
    ];
    await model.refresh();
    const failed = await model.releaseAll();
    expect(failed).toEqual([
      { id: 'r-stuck', error: 'cannot release r-stuck now' }
    ]);
    expect(model.reservations.map(r => r.id)).toEqual(['r-stuck']);
    model.dispose();
  });

  it('re-reads free GPUs once after a burst of reservation changes', async () => {
    const { client, model } = makeModel();
    await model.refresh();
    client.calls = [];
    client.clustersList = [cluster({ free_gpus: 0 })];
    client.reservationsList = [reservation({ id: 'r-1' })];
    model.applyEvent({ kind: 'reservation', id: 'r-1', state: 'pending' });
    model.applyEvent({ kind: 'reservation', id: 'r-1', state: 'ready' });
    await new Promise(resolve => setTimeout(resolve, 5));
    expect(client.calls.filter(c => c === 'clusters')).toHaveLength(1);
    expect(model.clusters[0].free_gpus).toBe(0);
    model.dispose();
  });

  it('stops a run', async () => {
    const { client, model } = makeModel();
    client.runsList = [run()];
    await model.refresh();
    await model.stopRun('run-1');
    expect(model.runs[0]).toMatchObject({ state: 'stopped', exit_code: -15 });
    model.dispose();
  });

  it('polls through the lumino Poll and stops when disposed', async () => {
    const client = new FakeClient();
    // A short interval: a disposed Poll leaves its last timer to run out.
    const model = new NeoModel({ client, standby: 'never', interval: 10 });
    await model.start();
    await model.poll.tick;
    await flush();
    expect(client.calls).toContain('clusters');
    model.dispose();
    expect(model.poll.isDisposed).toBe(true);
    expect(model.isDisposed).toBe(true);
  });
});
