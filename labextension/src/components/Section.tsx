import * as React from 'react';

/** A titled part of the sidebar, with an optional count badge. */
export function Section(props: {
  title: string;
  testid: string;
  count?: number;
  children: React.ReactNode;
}): JSX.Element {
  return (
    <section className="jp-neo-section" data-testid={props.testid}>
      <h3 className="jp-neo-section-title">
        {props.title}
        {props.count !== undefined && (
          <span className="jp-neo-count">{props.count}</span>
        )}
      </h3>
      {props.children}
    </section>
  );
}
