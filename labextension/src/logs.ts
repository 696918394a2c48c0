/**
 * Following one rank's log tail of one run: a lumino Poll owned by a model
 * (the sidebar's, or a run widget's), never a component's timer. It polls
 * while the run is active, fetches once more when it ends, and stands by
 * when nothing is followed or the page is hidden.
 */
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import type { ILogTail } from './types';

export type FetchTail = (
  runId: string,
  rank: number,
  tail: number
) => Promise<ILogTail>;

/** What is followed and what it showed last. */
export interface ILogView {
  runId: string;
  rank: number;
  /** null until the first answer. */
  lines: string[] | null;
  error: string;
}

export namespace LogFollower {
  export interface IOptions {
    fetch: FetchTail;
    /** Poll period in ms while the run is active (default 2 s). */
    interval?: number;
    /** Lines to fetch (default 200). */
    tail?: number;
  }
}

export class LogFollower {
  constructor(options: LogFollower.IOptions) {
    this._fetch = options.fetch;
    this._tail = options.tail ?? 200;
    this.poll = new Poll({
      auto: false,
      factory: () => this._tick(),
      frequency: {
        interval: options.interval ?? 2000,
        backoff: true,
        max: 30000
      },
      name: 'jupyter-neo:logs',
      standby: () => this._idle() || 'when-hidden'
    });
    void this.poll.start().catch(() => undefined);
  }

  readonly poll: Poll;

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get view(): ILogView | null {
    return this._view;
  }

  /** The poll period in ms while a run is active. */
  set interval(ms: number) {
    this.poll.frequency = { ...this.poll.frequency, interval: ms };
  }

  /**
   * Follow `rank` of `runId`. `active`: the run may still print (poll); a
   * finished run is fetched once. Following the same target again only
   * updates `active` (a run that just ended gets its last lines).
   */
  follow(runId: string, rank: number, active: boolean): void {
    const same =
      this._view && this._view.runId === runId && this._view.rank === rank;
    const ended = same && this._active && !active;
    this._active = active;
    if (same && !ended) {
      return;
    }
    if (!same) {
      this._view = { runId, rank, lines: null, error: '' };
      this._changed.emit();
    }
    this._fetched = false;
    void this.poll.refresh();
  }

  /** Follow nothing. */
  clear(): void {
    this._view = null;
    this._changed.emit();
  }

  dispose(): void {
    this.poll.dispose();
    Signal.clearData(this);
  }

  private _idle(): boolean {
    return this._view === null || (!this._active && this._fetched);
  }

  private async _tick(): Promise<void> {
    const view = this._view;
    if (view === null || this._idle()) {
      return;
    }
    try {
      const tail = await this._fetch(view.runId, view.rank, this._tail);
      if (this._view === view) {
        this._view = { ...view, lines: tail.lines, error: '' };
        this._fetched = true;
        this._changed.emit();
      }
    } catch (error) {
      if (this._view === view) {
        this._view = {
          ...view,
          error: String((error as Error)?.message ?? error)
        };
        this._fetched = true; // a finished run is not asked again; an active one is
        this._changed.emit();
      }
    }
  }

  private _fetch: FetchTail;
  private _tail: number;
  private _view: ILogView | null = null;
  private _active = false;
  private _fetched = false;
  private _changed = new Signal<this, void>(this);
}
