import * as React from 'react';

/**
 * The first line of a list row (a reservation, a run): its name, its state as
 * a coloured badge, then whatever the row adds. Rows that open details pass
 * `onActivate`; the head then works as a button by mouse and by keyboard
 * (Enter or Space), so every clickable row behaves alike.
 */
export function RowHead(props: {
  name: string;
  /** Tooltip of the name (a reservation's id when it shows its name). */
  nameTitle?: string;
  nameTestid?: string;
  /** The state in the badge's class, `jp-neo-state-<state>`. */
  state: string;
  /** The badge's text; the state if not given. */
  badge?: string;
  badgeTestid: string;
  /** Tooltip of the whole head. */
  title?: string;
  onActivate?: () => void;
  children?: React.ReactNode;
}): JSX.Element {
  const activate = props.onActivate;
  return (
    <div
      className={
        activate ? 'jp-neo-row-head jp-neo-clickable' : 'jp-neo-row-head'
      }
      role={activate ? 'button' : undefined}
      tabIndex={activate ? 0 : undefined}
      title={props.title}
      onClick={activate}
      onKeyDown={
        activate
          ? e => {
              if (e.key === 'Enter' || e.key === ' ') {
                e.preventDefault();
                activate();
              }
            }
          : undefined
      }
    >
      <span
        className="jp-neo-id"
        title={props.nameTitle}
        data-testid={props.nameTestid}
      >
        {props.name}
      </span>
      <span
        className={`jp-neo-badge jp-neo-state-${props.state}`}
        data-testid={props.badgeTestid}
      >
        {props.badge ?? props.state}
      </span>
      {props.children}
    </div>
  );
}
