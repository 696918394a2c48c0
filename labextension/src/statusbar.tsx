import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import * as React from 'react';

import { formatRate } from './format';
import { gpuIcon } from './icon';
import { NeoModel } from './model';

/** Status-bar item: GPUs held and what they cost per hour. */
export class NeoStatus extends ReactWidget {
  constructor(
    readonly model: NeoModel,
    private readonly _onClick: () => void
  ) {
    super();
    this.addClass('jp-neo-status');
    this.node.title = 'GPUs held through jupyter-neo (click to open)';
  }

  protected render(): JSX.Element {
    return (
      <UseSignal signal={this.model.changed}>
        {() => (
          <span
            className="jp-neo-status-text"
            data-testid="neo-status"
            onClick={this._onClick}
          >
            <gpuIcon.react tag="span" className="jp-neo-status-icon" />
            {this.model.heldGpus} GPU{this.model.heldGpus === 1 ? '' : 's'} ·{' '}
            {formatRate(this.model.pricePerHour)}
          </span>
        )}
      </UseSignal>
    );
  }
}
