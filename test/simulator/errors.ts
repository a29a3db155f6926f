// API errors: every error answer is `{id, message, request_id}`.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly id: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const badRequest = (message: string): ApiError => new ApiError(400, 'bad_request', message);
export const unauthorized = (): ApiError => new ApiError(401, 'unauthorized', 'Unable to authenticate you');
export const notFound = (message = 'The resource you were accessing could not be found.'): ApiError =>
  new ApiError(404, 'not_found', message);
export const conflict = (message: string): ApiError => new ApiError(409, 'conflict', message);
export const unprocessable = (message: string): ApiError => new ApiError(422, 'unprocessable_entity', message);
export const tooManyRequests = (retryAfterSeconds: number | undefined): ApiError =>
  new ApiError(
    429,
    'too_many_requests',
    'API Rate limit exceeded.',
    retryAfterSeconds === undefined ? {} : { 'retry-after': String(retryAfterSeconds) },
  );
export const serverError = (status: number): ApiError =>
  new ApiError(
    status,
    status === 503 ? 'service_unavailable' : 'server_error',
    'Server was unable to give you a response.',
  );
