import * as React from 'react';

import { formatShape } from '../format';
import type {
  ICluster,
  IPreview,
  IReservation,
  IReserveRequest
} from '../types';
import {
  CHEAPEST,
  EMPTY_FORM,
  IReserveForm,
  ReserveFormField,
  validateReserveForm
} from '../validate';
import { errorMessage } from './hooks';
import { PricePreview } from './PricePreview';

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

/** Milliseconds of typing quiet before the price preview is asked for. */
export const PREVIEW_DELAY_MS = 300;

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

export interface IReserveFormProps {
  clusters: readonly ICluster[];
  /** Reserve; resolves with the new reservation or rejects with the reason. */
  onReserve: (request: IReserveRequest) => Promise<IReservation>;
  /** Price a request without reserving (omit to show no preview). */
  onPreview?: (request: IReserveRequest) => Promise<IPreview>;
}

/**
 * The Reserve form: inputs for every field of a gang request, checks a user
 * can fix before asking, a price preview, and the server's answer inline.
 */
export function ReserveForm(props: IReserveFormProps): JSX.Element {
  const { clusters, onReserve, onPreview } = props;
  const [form, setForm] = React.useState<IReserveForm>(EMPTY_FORM);
  const [errors, setErrors] = React.useState<
    Partial<Record<ReserveFormField, string>>
  >({});
  const [serverError, setServerError] = React.useState('');
  const [notice, setNotice] = React.useState('');
  const [busy, setBusy] = React.useState(false);
  const [preview, setPreview] = React.useState<IPreview | null>(null);
  const [previewError, setPreviewError] = React.useState('');
  const [pricing, setPricing] = React.useState(false);

  // Price what the form says, once typing pauses; a newer form wins.
  React.useEffect(() => {
    if (!onPreview) {
      return;
    }
    const { request } = validateReserveForm(form);
    setPreview(null);
    setPreviewError('');
    if (!request) {
      setPricing(false);
      return;
    }
    let current = true;
    setPricing(true);
    const timer = window.setTimeout(() => {
      onPreview(request)
        .then(p => current && setPreview(p))
        .catch(e => current && setPreviewError(errorMessage(e)))
        .finally(() => current && setPricing(false));
    }, PREVIEW_DELAY_MS);
    return () => {
      current = false;
      window.clearTimeout(timer);
    };
  }, [form, onPreview]);

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
      const reservation = await onReserve(result.request);
      setNotice(
        `Reserved ${reservation.name || reservation.id}: ${formatShape(reservation)} on ${reservation.cluster}.`
      );
    } catch (error) {
      setServerError(errorMessage(error));
    } finally {
      setBusy(false);
    }
  };

  const gpuTypes = [...new Set(clusters.map(c => c.gpu_type))].sort();
  const regions = [...new Set(clusters.map(c => c.region))]
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
            {clusters.map(c => (
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
        <Field label="Budget $" field="budget" error={errors.budget}>
          {input('budget', { inputMode: 'decimal', placeholder: 'none' })}
        </Field>
        <Field label="Name" field="name" error={errors.name}>
          {input('name', { placeholder: 'optional' })}
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
      {onPreview && (
        <PricePreview
          preview={preview}
          error={previewError}
          loading={pricing}
        />
      )}
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
