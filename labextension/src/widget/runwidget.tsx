/**
 * The ipywidgets model and view of the `%neo run` block (Python:
 * `jupyter_neo.widgets.NeoRunWidget`).
 *
 * The kernel pushes state through the model's traits. Everything the user
 * does goes to the Jupyter server instead, with the page's credentials
 * (token and XSRF through `ServerConnection`): Stop is `DELETE runs/ID`, a
 * rank's log tail is `GET runs/ID/logs`, polled by a `LogFollower` the view
 * owns. A kernel blocked in `%neo run` cannot read widget messages; the
 * server can, so the block stays live for as long as the cell runs.
 */
import {
  DOMWidgetModel,
  DOMWidgetView,
  ISerializers,
  WidgetModel,
  unpack_models
} from '@jupyter-widgets/base';
import { Widget } from '@lumino/widgets';
import type { ServerConnection } from '@jupyterlab/services';
import * as React from 'react';
import { createRoot, Root } from 'react-dom/client';

import { NeoClient } from '../client';
import { LogFollower } from '../logs';
import type { IRun } from '../types';
import { RunPanel } from './RunPanel';

export const MODULE_NAME = 'jupyter-neo';
export const MODULE_VERSION = '0.1.0';

let settings: ServerConnection.ISettings | null = null;
let logInterval = 2000;

/** Set by the plugin at activation: where the REST API is and how to call it. */
export function configure(
  serverSettings: ServerConnection.ISettings,
  options: { logInterval?: number } = {}
): void {
  settings = serverSettings;
  logInterval = options.logInterval ?? logInterval;
}

export class NeoRunModel extends DOMWidgetModel {
  static serializers: ISerializers = {
    ...DOMWidgetModel.serializers,
    chart: { deserialize: unpack_models }
  };

  defaults(): Backbone.ObjectHash {
    return {
      ...super.defaults(),
      _model_name: 'NeoRunModel',
      _model_module: MODULE_NAME,
      _model_module_version: MODULE_VERSION,
      _view_name: 'NeoRunView',
      _view_module: MODULE_NAME,
      _view_module_version: MODULE_VERSION,
      run: {},
      status: 'starting',
      notice: '',
      tail: [],
      shown: [],
      finished: false,
      chart: null
    };
  }
}

export class NeoRunView extends DOMWidgetView {
  render(): void {
    this.el.classList.add('jp-neo-runwidget-host');
    if (!settings) {
      throw new Error('jupyter-neo: the run widget was not configured');
    }
    const client = new NeoClient(settings);
    this._client = client;
    this._logs = new LogFollower({
      fetch: (id, rank, tail) => client.logs(id, rank, tail),
      interval: logInterval
    });
    this._logs.changed.connect(() => this._draw());
    // React draws the panel; child widgets (the metrics chart) go below it.
    const panel = document.createElement('div');
    this._chartHost = document.createElement('div');
    this._chartHost.className = 'jp-neo-runwidget-extra';
    this.el.append(panel, this._chartHost);
    this._root = createRoot(panel);
    this.listenTo(this.model, 'change', () => this._draw());
    this.listenTo(this.model, 'change:chart', () => void this._showChart());
    void this._showChart();
    this._clock = window.setInterval(() => {
      if (!this.model.get('finished')) {
        this._draw();
      }
    }, 1000);
    this._draw();
  }

  /** Show the chart's widget (issue 18's curves) once the kernel sends it. */
  private async _showChart(): Promise<void> {
    const model = this.model.get('chart') as WidgetModel | null;
    if (!model || this._chartView || !this._chartHost) {
      return;
    }
    const view = (await this.create_child_view(model)) as DOMWidgetView;
    this._chartView = view;
    // One lumino at run time (shared); two copies of its types at build time.
    Widget.attach(view.luminoWidget as unknown as Widget, this._chartHost);
  }

  remove(): void {
    this._chartView?.remove();
    window.clearInterval(this._clock);
    this._logs?.dispose();
    this._root?.unmount();
    super.remove();
  }

  private _draw(): void {
    const m = this.model;
    const logs = this._logs!;
    const client = this._client!;
    this._root?.render(
      <RunPanel
        run={m.get('run') as Partial<IRun>}
        status={m.get('status')}
        notice={m.get('notice')}
        tail={m.get('tail')}
        shown={m.get('shown')}
        finished={m.get('finished')}
        view={logs.view}
        follow={(id, rank, active) => logs.follow(id, rank, active)}
        onStop={async id => {
          await client.stopRun(id);
        }}
        now={Date.now()}
      />
    );
  }

  private _client: NeoClient | null = null;
  private _logs: LogFollower | null = null;
  private _root: Root | null = null;
  private _clock = 0;
  private _chartHost: HTMLElement | null = null;
  private _chartView: DOMWidgetView | null = null;
}
