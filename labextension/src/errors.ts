/** Errors of the jupyter-neo REST API, free of JupyterLab imports. */

/**
 * An error answered by the server extension: `{"code": str, "message": str}`
 * with its HTTP status (400, 404, 409...).
 */
export class NeoAPIError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string
  ) {
    super(message);
    this.name = 'NeoAPIError';
  }
}

/** Turn an error body into a NeoAPIError with a message a user can read. */
export function errorFromBody(status: number, body: unknown): NeoAPIError {
  if (body && typeof body === 'object') {
    const b = body as { code?: unknown; message?: unknown; reason?: unknown };
    const message =
      typeof b.message === 'string' && b.message
        ? b.message
        : typeof b.reason === 'string' && b.reason
          ? b.reason
          : `HTTP ${status}`;
    const code = typeof b.code === 'string' ? b.code : `http_${status}`;
    return new NeoAPIError(status, code, message);
  }
  const text = typeof body === 'string' ? body.trim() : '';
  const short = text && !text.startsWith('<') ? text.slice(0, 200) : '';
  return new NeoAPIError(status, `http_${status}`, short || `HTTP ${status}`);
}
