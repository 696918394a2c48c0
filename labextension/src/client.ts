/**
 * A thin client of the jupyter-neo REST API (`<baseUrl>/jupyter-neo/...`).
 */
import { ServerConnection } from '@jupyterlab/services';

import { requestAPI } from './request';
import type {
  ICluster,
  IDataset,
  ILogTail,
  IReservation,
  IReservationPatch,
  IPreview,
  IReserveRequest,
  IRun
} from './types';

/** What the model needs from a client; tests pass a fake. */
export interface INeoClient {
  clusters(): Promise<ICluster[]>;
  reservations(): Promise<IReservation[]>;
  reservation(id: string): Promise<IReservation>;
  reserve(request: IReserveRequest): Promise<IReservation>;
  patchReservation(id: string, patch: IReservationPatch): Promise<IReservation>;
  release(id: string): Promise<IReservation>;
  runs(): Promise<IRun[]>;
  run(id: string): Promise<IRun>;
  stopRun(id: string): Promise<IRun>;
  logs(id: string, rank: number, tail?: number): Promise<ILogTail>;
  preview(request: IReserveRequest): Promise<IPreview>;
  /** Configured datasets (`GET /datasets`); optional so older fakes still fit. */
  datasets?(): Promise<IDataset[]>;
}

/** A gang request as query parameters (`gpus=16&nodes=2&idle_ttl=30m`). */
export function requestQuery(request: IReserveRequest): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(request)) {
    if (value !== undefined && value !== null && value !== '') {
      params.append(key, String(value));
    }
  }
  return params.toString();
}

/**
 * A client of the jupyter-neo REST API. Every method throws `NeoAPIError`
 * when the server answers an error.
 */
export class NeoClient implements INeoClient {
  constructor(readonly serverSettings: ServerConnection.ISettings) {}

  async clusters(): Promise<ICluster[]> {
    const body = await this._get<{ clusters: ICluster[] }>('clusters');
    return body.clusters;
  }

  async reservations(): Promise<IReservation[]> {
    const body = await this._get<{ reservations: IReservation[] }>(
      'reservations'
    );
    return body.reservations;
  }

  reservation(id: string): Promise<IReservation> {
    return this._get<IReservation>(`reservations/${encodeURIComponent(id)}`);
  }

  reserve(request: IReserveRequest): Promise<IReservation> {
    return requestAPI<IReservation>('reservations', this.serverSettings, {
      method: 'POST',
      body: JSON.stringify(request)
    });
  }

  patchReservation(
    id: string,
    patch: IReservationPatch
  ): Promise<IReservation> {
    return requestAPI<IReservation>(
      `reservations/${encodeURIComponent(id)}`,
      this.serverSettings,
      { method: 'PATCH', body: JSON.stringify(patch) }
    );
  }

  release(id: string): Promise<IReservation> {
    return requestAPI<IReservation>(
      `reservations/${encodeURIComponent(id)}`,
      this.serverSettings,
      { method: 'DELETE' }
    );
  }

  async runs(): Promise<IRun[]> {
    const body = await this._get<{ runs: IRun[] }>('runs');
    return body.runs;
  }

  run(id: string): Promise<IRun> {
    return this._get<IRun>(`runs/${encodeURIComponent(id)}`);
  }

  stopRun(id: string): Promise<IRun> {
    return requestAPI<IRun>(
      `runs/${encodeURIComponent(id)}`,
      this.serverSettings,
      { method: 'DELETE' }
    );
  }

  logs(id: string, rank: number, tail = 200): Promise<ILogTail> {
    return this._get<ILogTail>(
      `runs/${encodeURIComponent(id)}/logs?rank=${rank}&tail=${tail}`
    );
  }

  preview(request: IReserveRequest): Promise<IPreview> {
    return this._get<IPreview>(`placement/preview?${requestQuery(request)}`);
  }

  async datasets(): Promise<IDataset[]> {
    const body = await this._get<{ datasets: IDataset[] }>('datasets');
    return body.datasets;
  }

  private _get<T>(endPoint: string): Promise<T> {
    return requestAPI<T>(endPoint, this.serverSettings, { method: 'GET' });
  }
}
