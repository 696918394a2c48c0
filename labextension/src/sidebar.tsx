/**
 * The jupyter-neo sidebar: clusters, reservations, the Reserve form and runs.
 * It renders the model and turns clicks into model calls; nothing else.
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
  countdown,
  formatAge,
  formatCommand,
  formatIdleTtl,
  formatMemory,
  formatMoney,
  formatRate,
  formatShape,
  podUtilisation,
  reservationGpus,
  runDuration
} from './format';
import { gpuIcon } from './icon';
import { NeoModel } from './model';
import { NeoAPIError } from './errors';
import type { ICluster, IPod, IReservation, IRun } from './types';
import { FINAL_RUN_STATES } from './types';
import {
  CHEAPEST,
  EMPTY_FORM,
  IReserveForm,
  ReserveFormField,
  validateReserveForm
} from './validate';

/** Short backend names for the narrow clusters table. */
const BACKEND_SHORT: Record<string, string> = { kubernetes: 'k8s' };

/** Idle TTLs offered by Extend. */
export const EXTEND_CHOICES = ['30m', '1h', '2h', '4h', '8h', '24h', 'none'];

function errorMessage(error: unknown): string {
  if (error instanceof NeoAPIError) {
    return error.message;
  }
  return String((error as Error)?.message ?? error);
}

/** The current time, re-rendered every `ms` while mounted. */
function useNow(ms = 1000): number {
  const [now, setNow] = React.useState(() => Date.now());
  React.useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), ms);
    return () => window.clearInterval(timer);
  }, [ms]);
  return now;
}

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

function Section(props: {
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

function ClustersTable(props: { clusters: readonly ICluster[] }): JSX.Element {
  if (props.clusters.length === 0) {
    return <p className="jp-neo-empty">No clusters configured.</p>;
  }
  return (
    <div className="jp-neo-table-wrap">
      <table className="jp-neo-table" data-testid="neo-clusters">
        <thead>
          <tr>
            <th title="name and backend">Cluster</th>
            <th>Region</th>
            <th>GPU</th>
            <th title="free / total GPUs">Free</th>
            <th title="USD per GPU-hour">$/GPU-h</th>
          </tr>
        </thead>
        <tbody>
          {props.clusters.map(c => (
            <tr
              key={c.name}
              className="jp-neo-cluster-row"
              data-testid="neo-cluster-row"
              data-cluster={c.name}
              title={`${c.provider} · ${c.nodes} nodes × ${c.gpus_per_node} GPUs${
                c.residency.length
                  ? ` · residency ${c.residency.join(', ')}`
                  : ''
              }`}
            >
              <td>
                <div className="jp-neo-cluster-name">{c.name}</div>
                <div className="jp-neo-sub" data-testid="neo-cluster-backend">
                  {BACKEND_SHORT[c.backend] ?? c.backend}
                </div>
              </td>
              <td>{c.region || '\u2014'}</td>
              <td>{c.gpu_type}</td>
              <td className="jp-neo-num">
                {c.free_gpus}/{c.total_gpus}
              </td>
              <td className="jp-neo-num">
                {formatMoney(c.price_per_gpu_hour)}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function PodDots(props: { pods: IPod[] }): JSX.Element {
  return (
    <span className="jp-neo-pod-dots">
      {props.pods.map(p => (
        <span
          key={p.name}
          className={`jp-neo-dot jp-neo-state-${p.state}`}
          data-testid="neo-pod-dot"
          data-state={p.state}
          title={`rank ${p.rank} · ${p.name} · ${p.address || 'no address'} · ${p.state}`}
        />
      ))}
    </span>
  );
}

function UtilBars(props: { pods: IPod[] }): JSX.Element | null {
  const withStats = props.pods.filter(p => p.stats && p.stats.gpus.length > 0);
  if (withStats.length === 0) {
    return null;
  }
  return (
    <div className="jp-neo-util" data-testid="neo-util">
      {withStats.map(pod => {
        const mean = podUtilisation(pod);
        return (
          <div key={pod.name} className="jp-neo-util-row">
            <span className="jp-neo-util-label">rank {pod.rank}</span>
            <span className="jp-neo-util-gpus">
              {pod.stats!.gpus.map(g => (
                <span
                  key={g.index}
                  className="jp-neo-util-bar"
                  title={`GPU ${g.index}: ${
                    g.util === null ? 'n/a' : `${Math.round(g.util)}%`
                  } ${formatMemory(g.mem_used, g.mem_total)}`}
                >
                  <span
                    className="jp-neo-util-fill"
                    style={{
                      width: `${Math.max(0, Math.min(100, g.util ?? 0))}%`
                    }}
                  />
                </span>
              ))}
            </span>
            <span className="jp-neo-util-value">
              {mean === null ? 'n/a' : `${Math.round(mean)}%`}
            </span>
          </div>
        );
      })}
    </div>
  );
}

function ReservationRow(props: {
  model: NeoModel;
  reservation: IReservation;
  now: number;
}): JSX.Element {
  const r = props.reservation;
  // The pods' agents enforce the idle TTL (only they see activity); the
  // budget's deadline is a fixed time, so it counts down here.
  const budgetLeft = r.deadline ? countdown(r.deadline, props.now) : null;
  const [busy, setBusy] = React.useState(false);
  const act = (fn: () => Promise<void>) => async () => {
    setBusy(true);
    try {
      await fn();
    } finally {
      setBusy(false);
    }
  };
  return (
    <li
      className={`jp-neo-reservation jp-neo-state-${r.state}`}
      data-testid="neo-reservation-row"
      data-reservation-id={r.id}
      data-state={r.state}
    >
      <div className="jp-neo-row-head">
        <span className="jp-neo-id" title={r.id}>
          {r.name || r.id}
        </span>
        <span
          className={`jp-neo-badge jp-neo-state-${r.state}`}
          data-testid="neo-reservation-state"
        >
          {r.state}
        </span>
        <PodDots pods={r.pods} />
      </div>
      <div className="jp-neo-row-meta">
        <span title="cluster">{r.cluster}</span>
        <span title="nodes × GPUs per node">{formatShape(r)}</span>
        <span title="age">{formatAge(r.created, props.now)}</span>
        <span
          className="jp-neo-ttl"
          title="released after being idle this long"
          data-testid="neo-reservation-ttl"
        >
          {formatIdleTtl(r.idle_ttl)}
        </span>
        <span title={`${formatRate(r.price_per_hour)}`}>
          {formatMoney(r.cost)}
          {r.budget !== null && ` / ${formatMoney(r.budget)}`}
        </span>
        {budgetLeft && r.state !== 'released' && (
          <span
            className={
              budgetLeft.urgent || r.budget_warned
                ? 'jp-neo-ttl jp-mod-urgent'
                : 'jp-neo-ttl'
            }
            title="released when the budget runs out"
            data-testid="neo-reservation-deadline"
          >
            budget {budgetLeft.text}
          </span>
        )}
      </div>
      {r.reason && <div className="jp-neo-reason">{r.reason}</div>}
      <UtilBars pods={r.pods} />
      <div className="jp-neo-actions">
        <button
          className="jp-Button jp-mod-styled jp-mod-minimal jp-neo-small"
          data-testid="neo-reservation-extend"
          disabled={busy}
          onClick={act(() => promptExtend(props.model, r))}
        >
          Extend
        </button>
        <button
          className="jp-Button jp-mod-styled jp-mod-warn jp-neo-small"
          data-testid="neo-reservation-release"
          disabled={busy}
          onClick={act(() => confirmRelease(props.model, r))}
        >
          Release
        </button>
      </div>
    </li>
  );
}

function Reservations(props: { model: NeoModel }): JSX.Element {
  const now = useNow();
  const list = props.model.reservations;
  if (list.length === 0) {
    return (
      <p className="jp-neo-empty" data-testid="neo-no-reservations">
        No GPUs held.
      </p>
    );
  }
  return (
    <ul className="jp-neo-list" data-testid="neo-reservations">
      {list.map(r => (
        <ReservationRow
          key={r.id}
          model={props.model}
          reservation={r}
          now={now}
        />
      ))}
    </ul>
  );
}

function Field(props: {
  label: string;
  field: ReserveFormField;
  error?: string;
  children: React.ReactNode;
}): JSX.Element {
  return (
    <label className="jp-neo-field">
      <span className="jp-neo-field-label">{props.label}</span>
      {props.children}
      {props.error && (
        <span
          className="jp-neo-field-error"
          data-testid={`neo-form-error-${props.field}`}
        >
          {props.error}
        </span>
      )}
    </label>
  );
}

const TEST_IDS: Record<ReserveFormField, string> = {
  gpus: 'neo-form-gpus',
  nodes: 'neo-form-nodes',
  gpuType: 'neo-form-gpu-type',
  cluster: 'neo-form-cluster',
  region: 'neo-form-region',
  maxPrice: 'neo-form-max-price',
  idleTtl: 'neo-form-idle-ttl',
  name: 'neo-form-name',
  budget: 'neo-form-budget'
};

export function ReserveForm(props: { model: NeoModel }): JSX.Element {
  const { model } = props;
  const [form, setForm] = React.useState<IReserveForm>(EMPTY_FORM);
  const [errors, setErrors] = React.useState<
    Partial<Record<ReserveFormField, string>>
  >({});
  const [serverError, setServerError] = React.useState('');
  const [notice, setNotice] = React.useState('');
  const [busy, setBusy] = React.useState(false);

  const input = (
    field: ReserveFormField,
    extra: React.InputHTMLAttributes<HTMLInputElement> = {}
  ) => (
    <input
      className="jp-mod-styled jp-neo-input"
      name={field}
      data-testid={TEST_IDS[field]}
      value={form[field] ?? ''}
      aria-invalid={errors[field] ? true : undefined}
      onChange={e => {
        const value = e.target.value;
        setForm(f => ({ ...f, [field]: value }));
        setErrors(({ [field]: _, ...rest }) => rest);
      }}
      {...extra}
    />
  );

  const onSubmit = async (event: React.FormEvent) => {
    event.preventDefault();
    setNotice('');
    setServerError('');
    const result = validateReserveForm(form);
    setErrors(result.errors);
    if (!result.request) {
      return;
    }
    setBusy(true);
    try {
      const reservation = await model.reserve(result.request);
      setNotice(
        `Reserved ${reservation.name || reservation.id}: ${formatShape(reservation)} on ${reservation.cluster}.`
      );
    } catch (error) {
      setServerError(errorMessage(error));
    } finally {
      setBusy(false);
    }
  };

  const gpuTypes = [...new Set(model.clusters.map(c => c.gpu_type))].sort();
  const regions = [...new Set(model.clusters.map(c => c.region))]
    .filter(Boolean)
    .sort();

  return (
    <form
      className="jp-neo-form"
      data-testid="neo-reserve-form"
      onSubmit={onSubmit}
      noValidate
    >
      <div className="jp-neo-form-grid">
        <Field label="GPUs" field="gpus" error={errors.gpus}>
          {input('gpus', { inputMode: 'numeric', placeholder: '8' })}
        </Field>
        <Field label="Nodes" field="nodes" error={errors.nodes}>
          {input('nodes', { inputMode: 'numeric', placeholder: 'auto' })}
        </Field>
        <Field label="GPU type" field="gpuType" error={errors.gpuType}>
          {input('gpuType', { list: 'jp-neo-gpu-types', placeholder: 'any' })}
        </Field>
        <Field label="Cluster" field="cluster" error={errors.cluster}>
          <select
            className="jp-mod-styled jp-neo-input"
            name="cluster"
            data-testid={TEST_IDS.cluster}
            value={form.cluster}
            onChange={e => {
              const value = e.target.value;
              setForm(f => ({ ...f, cluster: value }));
            }}
          >
            <option value={CHEAPEST}>cheapest</option>
            {model.clusters.map(c => (
              <option key={c.name} value={c.name}>
                {c.name}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Region" field="region" error={errors.region}>
          {input('region', { list: 'jp-neo-regions', placeholder: 'any' })}
        </Field>
        <Field label="Max $/GPU-h" field="maxPrice" error={errors.maxPrice}>
          {input('maxPrice', { inputMode: 'decimal', placeholder: 'none' })}
        </Field>
        <Field label="Idle TTL" field="idleTtl" error={errors.idleTtl}>
          {input('idleTtl', { placeholder: '30m' })}
        </Field>
      </div>
      <datalist id="jp-neo-gpu-types">
        {gpuTypes.map(t => (
          <option key={t} value={t} />
        ))}
      </datalist>
      <datalist id="jp-neo-regions">
        {regions.map(r => (
          <option key={r} value={r} />
        ))}
      </datalist>
      {serverError && (
        <div
          className="jp-neo-form-error"
          role="alert"
          data-testid="neo-form-error"
        >
          {serverError}
        </div>
      )}
      {notice && (
        <div className="jp-neo-form-notice" data-testid="neo-form-notice">
          {notice}
        </div>
      )}
      <button
        type="submit"
        className="jp-Button jp-mod-styled jp-mod-accept"
        data-testid="neo-form-submit"
        disabled={busy}
      >
        {busy ? 'Reserving\u2026' : 'Reserve'}
      </button>
    </form>
  );
}

function LogTail(props: { model: NeoModel; run: IRun }): JSX.Element {
  const { model, run } = props;
  const ranks = run.ranks.length
    ? run.ranks.map(r => r.rank)
    : [...Array(Math.max(1, run.nodes * run.nproc_per_node)).keys()];
  const [rank, setRank] = React.useState(ranks[0] ?? 0);
  const [lines, setLines] = React.useState<string[] | null>(null);
  const [error, setError] = React.useState('');
  const active = !FINAL_RUN_STATES.has(run.state);

  React.useEffect(() => {
    let cancelled = false;
    const load = async () => {
      try {
        const tail = await model.client.logs(run.id, rank, 200);
        if (!cancelled) {
          setLines(tail.lines);
          setError('');
        }
      } catch (e) {
        if (!cancelled) {
          setError(errorMessage(e));
        }
      }
    };
    void load();
    const timer = active ? window.setInterval(load, 3000) : undefined;
    return () => {
      cancelled = true;
      window.clearInterval(timer);
    };
  }, [run.id, rank, active, run.state]);

  return (
    <div className="jp-neo-logs" data-testid="neo-run-logs">
      <div className="jp-neo-logs-bar">
        <label>
          rank{' '}
          <select
            className="jp-mod-styled jp-neo-small"
            data-testid="neo-run-rank"
            value={rank}
            onChange={e => setRank(Number(e.target.value))}
          >
            {ranks.map(r => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </label>
        {active && (
          <button
            className="jp-Button jp-mod-styled jp-mod-warn jp-neo-small"
            data-testid="neo-run-stop"
            onClick={() =>
              model
                .stopRun(run.id)
                .catch(e =>
                  Notification.error(`Stop failed: ${errorMessage(e)}`)
                )
            }
          >
            Stop
          </button>
        )}
      </div>
      {error ? (
        <div className="jp-neo-form-error">{error}</div>
      ) : (
        <pre className="jp-neo-log-lines" data-testid="neo-run-log-lines">
          {lines === null
            ? 'Loading\u2026'
            : lines.join('\n') || '(no output yet)'}
        </pre>
      )}
    </div>
  );
}

function Runs(props: { model: NeoModel }): JSX.Element {
  const now = useNow();
  const [selected, setSelected] = React.useState<string | null>(null);
  const runs = props.model.runs;
  if (runs.length === 0) {
    return <p className="jp-neo-empty">No runs yet.</p>;
  }
  return (
    <ul className="jp-neo-list" data-testid="neo-runs">
      {runs.map(run => (
        <li
          key={run.id}
          className={`jp-neo-run jp-neo-state-${run.state}${
            selected === run.id ? ' jp-mod-selected' : ''
          }`}
          data-testid="neo-run-row"
          data-run-id={run.id}
          data-state={run.state}
        >
          <div
            className="jp-neo-row-head jp-neo-clickable"
            role="button"
            tabIndex={0}
            title={run.command.join(' ')}
            onClick={() => setSelected(s => (s === run.id ? null : run.id))}
            onKeyDown={e => {
              if (e.key === 'Enter' || e.key === ' ') {
                e.preventDefault();
                setSelected(s => (s === run.id ? null : run.id));
              }
            }}
          >
            <span className="jp-neo-id">{run.id}</span>
            <span className={`jp-neo-badge jp-neo-state-${run.state}`}>
              {run.state}
            </span>
            <span title="duration">{runDuration(run, now)}</span>
            <span title="exit code" data-testid="neo-run-exit-code">
              {run.exit_code === null ? '' : `exit ${run.exit_code}`}
            </span>
          </div>
          <div className="jp-neo-row-meta">
            <span className="jp-neo-command">{formatCommand(run.command)}</span>
            <span>
              {run.nodes} × {run.nproc_per_node}
            </span>
          </div>
          {selected === run.id && <LogTail model={props.model} run={run} />}
        </li>
      ))}
    </ul>
  );
}

function StatusBanner(props: { model: NeoModel }): JSX.Element | null {
  const { status, error } = props.model;
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

function SidebarBody(props: { model: NeoModel }): JSX.Element {
  const { model } = props;
  const live = model.status === 'ok';
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
      <StatusBanner model={model} />
      {model.status !== 'missing' && (
        <>
          <Section
            title="Clusters"
            testid="neo-section-clusters"
            count={model.clusters.length}
          >
            <ClustersTable clusters={model.clusters} />
          </Section>
          <Section
            title="Reservations"
            testid="neo-section-reservations"
            count={model.reservations.length}
          >
            {live || model.reservations.length ? (
              <Reservations model={model} />
            ) : (
              <p className="jp-neo-empty">Loading…</p>
            )}
          </Section>
          <Section title="Reserve" testid="neo-section-reserve">
            <ReserveForm model={model} />
          </Section>
          <Section
            title="Runs"
            testid="neo-section-runs"
            count={model.runs.length}
          >
            <Runs model={model} />
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
