import * as React from 'react';

import { formatCommand, runDuration } from '../format';
import type { IRun } from '../types';
import { MetricSparkline } from './MetricSparkline';
import { RowHead } from './RowHead';

/** The badge of a run: its state, or "not applied" for a skipped hot iteration. */
export function runBadge(run: IRun): { text: string; state: string } {
  if (run.not_applied) {
    return { text: 'not applied', state: 'not-applied' };
  }
  return { text: run.state, state: run.state };
}

/** The first line of a run's error (the rest is the culprit's log). */
export function errorHead(run: IRun): string {
  return (run.not_applied ?? run.error ?? '').split('\n')[0];
}

export interface IRunsProps {
  /** Newest first. */
  runs: readonly IRun[];
  now: number;
  selected: string | null;
  onSelect: (id: string | null) => void;
  /** The open run's details (its log tail). */
  renderDetail: (run: IRun) => React.ReactNode;
}

/** Runs, newest first; a click opens a run's log tail. */
export function Runs(props: IRunsProps): JSX.Element {
  if (props.runs.length === 0) {
    return <p className="jp-neo-empty">No runs yet.</p>;
  }
  const toggle = (id: string) =>
    props.onSelect(props.selected === id ? null : id);
  return (
    <ul className="jp-neo-list" data-testid="neo-runs">
      {props.runs.map(run => {
        const badge = runBadge(run);
        const head = run.state === 'succeeded' ? '' : errorHead(run);
        return (
          <li
            key={run.id}
            className={`jp-neo-run jp-neo-state-${badge.state}${
              props.selected === run.id ? ' jp-mod-selected' : ''
            }`}
            data-testid="neo-run-row"
            data-run-id={run.id}
            data-state={run.state}
          >
            <RowHead
              name={run.label || run.id}
              nameTestid="neo-run-name"
              state={badge.state}
              badge={badge.text}
              badgeTestid="neo-run-state"
              title={run.command.join(' ')}
              onActivate={() => toggle(run.id)}
            >
              <span title="duration">{runDuration(run, props.now)}</span>
              <span title="exit code" data-testid="neo-run-exit-code">
                {run.exit_code === null ? '' : `exit ${run.exit_code}`}
              </span>
            </RowHead>
            <div className="jp-neo-row-meta">
              <span className="jp-neo-command">
                {formatCommand(run.command)}
              </span>
              <span>
                {run.nodes} × {run.nproc_per_node}
              </span>
              <MetricSparkline run={run} />
            </div>
            {head && (
              <div
                className={
                  run.not_applied
                    ? 'jp-neo-reason'
                    : 'jp-neo-reason jp-mod-error'
                }
                data-testid="neo-run-error"
              >
                {head}
              </div>
            )}
            {props.selected === run.id && props.renderDetail(run)}
          </li>
        );
      })}
    </ul>
  );
}
