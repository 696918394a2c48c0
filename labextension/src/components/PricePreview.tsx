import * as React from 'react';

import type { IPreview } from '../types';

/**
 * What a reservation would cost before it is made: the server's placement
 * (the same one `neo reserve` uses) priced, with the idle release.
 */
export function PricePreview(props: {
  preview: IPreview | null;
  error: string;
  loading: boolean;
}): JSX.Element | null {
  if (props.error) {
    return (
      <div
        className="jp-neo-preview jp-mod-error"
        data-testid="neo-form-preview-error"
      >
        {props.error}
      </div>
    );
  }
  if (!props.preview) {
    return props.loading ? (
      <div className="jp-neo-preview" data-testid="neo-form-preview-loading">
        Pricing…
      </div>
    ) : null;
  }
  return (
    <div
      className="jp-neo-preview"
      data-testid="neo-form-preview"
      data-cluster={props.preview.cluster}
    >
      {props.preview.text}
    </div>
  );
}
