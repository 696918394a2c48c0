import * as React from 'react';

/** Pixels from the bottom that still count as "at the tail". */
const AT_TAIL_PX = 8;

export interface ILogTailProps {
  /** Ranks to choose from; a negative one is "all" (a merged tail). */
  ranks: readonly number[];
  rank: number;
  /** null while loading. */
  lines: readonly string[] | null;
  error?: string;
  onRank: (rank: number) => void;
  /** Shown only while the run can still be stopped. */
  onStop?: () => void;
  /** A rank to mark as the culprit of a failure. */
  culprit?: number | null;
  /** Where the pane's text comes from, for screen readers. */
  label?: string;
}

/**
 * A rank selector and that rank's last lines. The pane follows the tail as
 * lines arrive, unless the user scrolled up to read (then it stays put until
 * they scroll back down).
 */
export function LogTail(props: ILogTailProps): JSX.Element {
  const pane = React.useRef<HTMLPreElement>(null);
  const follow = React.useRef(true);
  const text =
    props.lines === null
      ? 'Loading\u2026'
      : props.lines.join('\n') || '(no output yet)';

  React.useLayoutEffect(() => {
    const el = pane.current;
    if (el && follow.current) {
      el.scrollTop = el.scrollHeight;
    }
  }, [text, props.rank]);

  const onScroll = () => {
    const el = pane.current;
    if (el) {
      follow.current =
        el.scrollTop + el.clientHeight >= el.scrollHeight - AT_TAIL_PX;
    }
  };

  return (
    <div className="jp-neo-logs" data-testid="neo-run-logs">
      <div className="jp-neo-logs-bar">
        <label>
          rank{' '}
          <select
            className="jp-mod-styled jp-neo-small"
            data-testid="neo-run-rank"
            value={props.rank}
            onChange={e => {
              follow.current = true;
              props.onRank(Number(e.target.value));
            }}
          >
            {props.ranks.map(r => (
              <option key={r} value={r}>
                {r < 0
                  ? 'all'
                  : r === props.culprit
                    ? `${r} (failed first)`
                    : r}
              </option>
            ))}
          </select>
        </label>
        {props.onStop && (
          <button
            className="jp-Button jp-mod-styled jp-mod-warn jp-neo-small"
            data-testid="neo-run-stop"
            onClick={props.onStop}
          >
            Stop
          </button>
        )}
      </div>
      {props.error ? (
        <div className="jp-neo-form-error" data-testid="neo-run-log-error">
          {props.error}
        </div>
      ) : (
        <pre
          ref={pane}
          className="jp-neo-log-lines"
          data-testid="neo-run-log-lines"
          data-rank={props.rank}
          aria-label={props.label ?? `rank ${props.rank} output`}
          onScroll={onScroll}
        >
          {text}
        </pre>
      )}
    </div>
  );
}
