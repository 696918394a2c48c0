import * as React from 'react';

/** A header cell of a `ScrollTable`. */
export interface IColumn {
  label: string;
  /** Tooltip: what the column means or its unit. */
  title?: string;
  className?: string;
}

/**
 * The sidebar's tables (clusters, datasets) share one frame so they look and
 * scroll alike: the table scrolls sideways in its own box when the panel is
 * narrow, so a right-hand column is never cut off, and an empty list is said
 * in words instead of drawing an empty header.
 */
export function ScrollTable<T>(props: {
  /** `data-testid` of the `<table>`. */
  testid: string;
  rows: readonly T[];
  /** Shown instead of the table when there are no rows. */
  empty: string;
  columns: readonly IColumn[];
  /** One `<tr>` per row; it carries its own key. */
  row: (item: T) => React.ReactNode;
}): JSX.Element {
  if (props.rows.length === 0) {
    return <p className="jp-neo-empty">{props.empty}</p>;
  }
  return (
    <div className="jp-neo-table-wrap">
      <table className="jp-neo-table" data-testid={props.testid}>
        <thead>
          <tr>
            {props.columns.map(c => (
              <th key={c.label} title={c.title} className={c.className}>
                {c.label}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>{props.rows.map(props.row)}</tbody>
      </table>
    </div>
  );
}

/** A row's first cell: its name over a smaller second line (a backend, a size). */
export function NameCell(props: {
  name: string;
  sub: React.ReactNode;
  title?: string;
  /** `data-testid` of the second line, where a test reads it. */
  subTestid?: string;
}): JSX.Element {
  return (
    <td title={props.title}>
      <div className="jp-neo-cluster-name">{props.name}</div>
      <div className="jp-neo-sub" data-testid={props.subTestid}>
        {props.sub}
      </div>
    </td>
  );
}
