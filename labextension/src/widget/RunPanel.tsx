/**
 * The run block of `%neo run` in a notebook, as React: header, the notice
 * of a gang reserved for the run, the ranks grid, failure first, the log
 * tail with its rank selector, Stop. Pure: the view (`runwidget.ts`) hands
 * it the kernel's state, the followed log tail and the actions.
 *
 * Layout, top to bottom: header, notice, grid, error, logs, then `extra`
 * (a slot for more panes, e.g. live metric charts).
 */
import * as React from 'react';

import { LogTail } from '../components/LogTail';
import { runRanks } from '../components/RunDetail';
import { formatDuration } from '../format';
import type { ILogView } from '../logs';
import type { IRank, IRun } from '../types';
import { FINAL_RUN_STATES } from '../types';

/** The rank selector's value for the merged tail of every shown rank. */
export const ALL = -1;

export interface IRunPanelProps {
  /** The run document, `{}` before the run has one. */
  run: Partial<IRun>;
  /** Progress or the phase summary, from the kernel. */
  status: string;
  /** Said prominently (a new gang that bills). */
  notice: string;
  /** Merged tail of the `--ranks` ranks, from the kernel. */
  tail: readonly string[];
  /** Ranks asked for with `--ranks` (empty: all). */
  shown: readonly number[];
  finished: boolean;
  /** The followed single-rank tail. */
  view: ILogView | null;
  follow: (runId: string, rank: number, active: boolean) => void;
  onStop: (runId: string) => Promise<void>;
  now: number;
  extra?: React.ReactNode;
}

function rankCell(r: IRank): string {
  if (r.exit_code !== null) {
    return `exit ${r.exit_code}`;
  }
  if (r.state === 'stopped') {
    return 'stopped';
  }
  return r.phase && r.state === 'running' ? r.phase : r.state;
}

/** The initial rank choice: `--ranks all` (or several) shows every rank merged. */
export function initialRank(shown: readonly number[]): number {
  return shown.length === 1 ? shown[0] : ALL;
}

export function RunPanel(props: IRunPanelProps): JSX.Element {
  const run = props.run as IRun;
  const hasRun = typeof run.id === 'string';
  const [rank, setRank] = React.useState(initialRank(props.shown));
  const [stopping, setStopping] = React.useState(false);
  const [stopError, setStopError] = React.useState('');
  const failedRank = hasRun ? run.failed_rank : null;
  // Failure first: show the rank that failed first, once it is known.
  React.useEffect(() => {
    if (failedRank !== null && failedRank !== undefined && !run.not_applied) {
      setRank(failedRank);
    }
  }, [failedRank]);
  const active = hasRun && !FINAL_RUN_STATES.has(run.state) && !props.finished;
  React.useEffect(() => {
    if (hasRun && rank !== ALL) {
      props.follow(run.id, rank, active);
    }
  }, [hasRun && run.id, rank, active]);

  const stop = async () => {
    setStopping(true);
    setStopError('');
    try {
      await props.onStop(run.id);
    } catch (e) {
      setStopError(String((e as Error)?.message ?? e));
      setStopping(false);
    }
  };

  const state = hasRun ? run.state : 'starting';
  const tone = run.not_applied ? 'not-applied' : state;
  const ranks = hasRun ? runRanks(run) : [];
  const single =
    props.view &&
    hasRun &&
    props.view.runId === run.id &&
    props.view.rank === rank
      ? props.view
      : null;
  const elapsed = hasRun
    ? run.ended
      ? run.duration
      : (props.now - Date.parse(run.started)) / 1000
    : null;

  return (
    <div
      className={`jp-neo-runwidget jp-neo-state-${tone}`}
      data-testid="neo-run-widget"
      data-run-id={hasRun ? run.id : ''}
      data-state={state}
    >
      <div className="jp-neo-runwidget-head" data-testid="neo-run-widget-head">
        <b>{hasRun ? run.label || run.id : 'neo run'}</b>
        <span
          className={`jp-neo-badge jp-neo-state-${tone}`}
          data-testid="neo-run-widget-state"
        >
          {run.not_applied ? 'not applied' : state}
        </span>
        <span data-testid="neo-run-widget-status">{props.status}</span>
        {elapsed !== null && <span>{formatDuration(elapsed)}</span>}
        {hasRun && <span title="reservation">{run.reservation}</span>}
        <span className="jp-neo-runwidget-spacer" />
        {active && (
          <button
            className="jp-Button jp-mod-styled jp-mod-warn jp-neo-small"
            data-testid="neo-run-widget-stop"
            disabled={stopping}
            title="stop every rank on every node"
            onClick={() => void stop()}
          >
            {stopping ? 'Stopping\u2026' : 'Stop'}
          </button>
        )}
      </div>
      {props.notice && (
        <div
          className="jp-neo-runwidget-notice"
          data-testid="neo-run-widget-notice"
        >
          {props.notice}
        </div>
      )}
      {stopError && (
        <div className="jp-neo-reason jp-mod-error">{stopError}</div>
      )}
      {hasRun && (
        <table
          className="jp-neo-runwidget-grid"
          data-testid="neo-run-widget-grid"
        >
          <tbody>
            {[...Array(run.nodes).keys()].map(node => (
              <tr key={node}>
                <td>
                  <b>node {node}</b>
                </td>
                {run.ranks
                  .filter(r => r.node === node)
                  .map(r => (
                    <td
                      key={r.rank}
                      className={`jp-neo-state-${run.not_applied ? 'not-applied' : r.state}`}
                      data-testid="neo-run-widget-rank"
                      data-rank={r.rank}
                      data-state={r.state}
                      data-phase={r.phase ?? ''}
                    >
                      rank {r.rank}: {run.not_applied ? 'kept' : rankCell(r)}
                    </td>
                  ))}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {hasRun &&
        (run.not_applied || (run.error && run.state !== 'succeeded')) && (
          <div
            className={
              run.not_applied ? 'jp-neo-reason' : 'jp-neo-reason jp-mod-error'
            }
            data-testid="neo-run-widget-error"
          >
            {(run.not_applied || run.error || '').split('\n')[0]}
          </div>
        )}
      <LogTail
        ranks={[ALL, ...ranks]}
        rank={rank}
        lines={rank === ALL ? props.tail : single ? single.lines : null}
        error={rank === ALL || !single ? '' : single.error}
        culprit={run.not_applied ? null : failedRank}
        onRank={setRank}
      />
      {props.extra}
    </div>
  );
}
