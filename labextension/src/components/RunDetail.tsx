import * as React from 'react';

import type { ILogView } from '../logs';
import type { IRun } from '../types';
import { FINAL_RUN_STATES } from '../types';
import { LogTail } from './LogTail';

/** The ranks of a run (from its record, or its shape before it has one). */
export function runRanks(run: IRun): number[] {
  return run.ranks.length
    ? run.ranks.map(r => r.rank)
    : [...Array(Math.max(1, run.nodes * run.nproc_per_node)).keys()];
}

export interface IRunDetailProps {
  run: IRun;
  /** The followed log tail (from the model). */
  view: ILogView | null;
  /** Ask the model to follow this rank of this run. */
  follow: (runId: string, rank: number, active: boolean) => void;
  onStop: (runId: string) => void;
}

/**
 * An open run: its log tail, failure first. When the run fails, the rank
 * that failed first is selected (once; the user may pick another after).
 */
export function RunDetail(props: IRunDetailProps): JSX.Element {
  const { run, view, follow } = props;
  const ranks = runRanks(run);
  const [rank, setRank] = React.useState(run.failed_rank ?? ranks[0] ?? 0);
  React.useEffect(() => {
    if (run.failed_rank !== null && run.failed_rank !== undefined) {
      setRank(run.failed_rank);
    }
  }, [run.failed_rank]);
  const active = !FINAL_RUN_STATES.has(run.state);
  React.useEffect(() => {
    follow(run.id, rank, active);
  }, [run.id, rank, active]);
  const mine = view && view.runId === run.id && view.rank === rank;
  return (
    <LogTail
      ranks={ranks}
      rank={rank}
      lines={mine ? view.lines : null}
      error={mine ? view.error : ''}
      culprit={run.failed_rank}
      onRank={setRank}
      onStop={active ? () => props.onStop(run.id) : undefined}
    />
  );
}
