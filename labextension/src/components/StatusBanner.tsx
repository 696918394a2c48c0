import * as React from 'react';

import type { ConnectionStatus } from '../model';

/** Why the sidebar cannot show live data, if it cannot. */
export function StatusBanner(props: {
  status: ConnectionStatus;
  error: string;
}): JSX.Element | null {
  const { status, error } = props;
  if (status === 'missing') {
    return (
      <div
        className="jp-neo-banner jp-mod-error"
        data-testid="neo-missing-extension"
      >
        The jupyter-neo server extension is not answering (404 on
        <code> /jupyter-neo/clusters</code>). Install jupyter-neo in the
        environment that runs this Jupyter server, check{' '}
        <code>jupyter server extension list</code>, then restart the server.
      </div>
    );
  }
  if (status === 'offline') {
    return (
      <div className="jp-neo-banner jp-mod-warn" data-testid="neo-offline">
        Cannot reach the Jupyter server; retrying.
      </div>
    );
  }
  if (status === 'error') {
    return (
      <div className="jp-neo-banner jp-mod-error" data-testid="neo-error">
        {error}
      </div>
    );
  }
  return null;
}
