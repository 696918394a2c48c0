/**
 * The jupyter-neo sidebar: clusters, reservations, the Reserve form and runs.
 * This file wires the model to the components (one per file in
 * `components/`) and JupyterLab's dialogs; it decides nothing.
 */
import {
  Dialog,
  InputDialog,
  Notification,
  showDialog
} from '@jupyterlab/apputils';
import { ReactWidget, UseSignal, refreshIcon } from '@jupyterlab/ui-components';
import * as React from 'react';

import {
  ClustersTable,
  DatasetsView,
  errorMessage,
  Reservations,
  ReserveForm,
  RunDetail,
  Runs,
  Section,
  StatusBanner,
  useNow
} from './components';
import { formatRate, reservationGpus } from './format';
import { gpuIcon } from './icon';
import { NeoModel } from './model';
import type { IReservation, IRun } from './types';

/** Idle TTLs offered by Extend. */
export const EXTEND_CHOICES = ['30m', '1h', '2h', '4h', '8h', '24h', 'none'];

/** Ask, then release one reservation. */
export async function confirmRelease(
  model: NeoModel,
  reservation: IReservation
): Promise<void> {
  const result = await showDialog({
    title: 'Release reservation?',
    body:
      `Release ${reservation.name || reservation.id} ` +
      `(${reservationGpus(reservation)} GPUs on ${reservation.cluster})? ` +
      'Runs on it are stopped and its pods are given back.',
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Release' })]
  });
  if (!result.button.accept) {
    return;
  }
  try {
    await model.release(reservation.id);
  } catch (error) {
    Notification.error(`Release failed: ${errorMessage(error)}`);
  }
}

/** Ask for a new idle TTL, then PATCH it. */
export async function promptExtend(
  model: NeoModel,
  reservation: IReservation
): Promise<void> {
  const result = await InputDialog.getItem({
    title: `Idle TTL of ${reservation.name || reservation.id}`,
    label: 'Release after being idle for',
    items: EXTEND_CHOICES,
    current: 1,
    okLabel: 'Extend'
  });
  if (!result.button.accept || !result.value) {
    return;
  }
  try {
    await model.extend(reservation.id, result.value);
  } catch (error) {
    Notification.error(`Extend failed: ${errorMessage(error)}`);
  }
}

function stopRun(model: NeoModel, id: string): void {
  model
    .stopRun(id)
    .catch(e => Notification.error(`Stop failed: ${errorMessage(e)}`));
}

function SidebarBody(props: { model: NeoModel }): JSX.Element {
  const { model } = props;
  const now = useNow();
  const [selected, setSelected] = React.useState<string | null>(null);
  const live = model.status === 'ok';
  const select = (id: string | null) => {
    setSelected(id);
    if (id === null) {
      model.logs.clear();
    }
  };
  const onExtend = (r: IReservation) => promptExtend(model, r);
  const onRelease = (r: IReservation) => confirmRelease(model, r);
  const onReserve = React.useCallback(
    (request: Parameters<NeoModel['reserve']>[0]) => model.reserve(request),
    [model]
  );
  const onPreview = React.useCallback(
    (request: Parameters<NeoModel['preview']>[0]) => model.preview(request),
    [model]
  );
  const detail = (run: IRun) => (
    <RunDetail
      run={run}
      view={model.logs.view}
      follow={(id, rank, active) => model.logs.follow(id, rank, active)}
      onStop={id => stopRun(model, id)}
    />
  );
  return (
    <div className="jp-neo-body">
      <header className="jp-neo-header">
        <gpuIcon.react tag="span" className="jp-neo-header-icon" />
        <span className="jp-neo-title">GPUs</span>
        <span className="jp-neo-held" data-testid="neo-held">
          {model.heldGpus} held · {formatRate(model.pricePerHour)}
        </span>
        <button
          className="jp-Button jp-mod-minimal jp-neo-icon-button"
          title="Refresh"
          data-testid="neo-refresh"
          onClick={() => void model.poll.refresh()}
        >
          <refreshIcon.react tag="span" />
        </button>
      </header>
      <StatusBanner status={model.status} error={model.error} />
      {model.status !== 'missing' && (
        <>
          <Section
            title="Clusters"
            testid="neo-section-clusters"
            count={model.clusters.length}
          >
            <ClustersTable clusters={model.clusters} />
          </Section>
          {model.datasets.length > 0 && (
            <Section
              title="Datasets"
              testid="neo-section-datasets"
              count={model.datasets.length}
            >
              <DatasetsView
                datasets={model.datasets}
                clusters={model.clusters.map(c => c.name)}
              />
            </Section>
          )}
          <Section
            title="Reservations"
            testid="neo-section-reservations"
            count={model.reservations.length}
          >
            {live || model.reservations.length ? (
              <Reservations
                reservations={model.reservations}
                now={now}
                onExtend={onExtend}
                onRelease={onRelease}
              />
            ) : (
              <p className="jp-neo-empty">Loading…</p>
            )}
          </Section>
          <Section title="Reserve" testid="neo-section-reserve">
            <ReserveForm
              clusters={model.clusters}
              onReserve={onReserve}
              onPreview={onPreview}
            />
          </Section>
          <Section
            title="Runs"
            testid="neo-section-runs"
            count={model.runs.length}
          >
            <Runs
              runs={model.runs}
              now={now}
              selected={selected}
              onSelect={select}
              renderDetail={detail}
            />
          </Section>
        </>
      )}
    </div>
  );
}

/** The left sidebar panel. */
export class NeoSidebar extends ReactWidget {
  constructor(readonly model: NeoModel) {
    super();
    this.id = 'jupyter-neo-sidebar';
    this.addClass('jp-neo-sidebar');
    this.title.icon = gpuIcon;
    this.title.caption = 'GPU reservations (jupyter-neo)';
  }

  /**
   * Focus the Reserve form's first input, once the panel shows it. The
   * command palette may take the focus back as it closes: if the focus has
   * left the panel shortly after, give it to the input once more.
   */
  focusForm(): void {
    let attempts = 20;
    const focus = (input: HTMLInputElement) => {
      input.scrollIntoView({ block: 'nearest' });
      input.focus();
      input.select();
    };
    const tryFocus = () => {
      const input = this.node.querySelector<HTMLInputElement>(
        '[data-testid="neo-form-gpus"]'
      );
      if (input && this.isVisible) {
        focus(input);
        window.setTimeout(() => {
          if (!this.node.contains(document.activeElement)) {
            focus(input);
          }
        }, 100);
      } else if (--attempts > 0) {
        window.setTimeout(tryFocus, 50);
      }
    };
    window.setTimeout(tryFocus, 0);
  }

  protected render(): JSX.Element {
    return (
      <UseSignal signal={this.model.changed}>
        {() => <SidebarBody model={this.model} />}
      </UseSignal>
    );
  }
}
