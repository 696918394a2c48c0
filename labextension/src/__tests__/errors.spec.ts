import { NeoAPIError, errorFromBody } from '../errors';

describe('errorFromBody', () => {
  it('reads the {code, message} error body', () => {
    const error = errorFromBody(400, {
      code: 'invalid_request',
      message: 'gpus must be at least 1'
    });
    expect(error).toBeInstanceOf(NeoAPIError);
    expect(error).toMatchObject({
      status: 400,
      code: 'invalid_request',
      message: 'gpus must be at least 1'
    });
  });

  it('falls back to tornado reason and the status', () => {
    expect(errorFromBody(403, { reason: 'Forbidden' }).message).toBe(
      'Forbidden'
    );
    expect(errorFromBody(500, {})).toMatchObject({
      code: 'http_500',
      message: 'HTTP 500'
    });
  });

  it('does not show an HTML error page as the message', () => {
    expect(errorFromBody(404, '<html>404: Not Found</html>').message).toBe(
      'HTTP 404'
    );
    expect(errorFromBody(502, 'Bad gateway').message).toBe('Bad gateway');
  });
});
