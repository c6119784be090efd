// When a request may go to another server: nginx's proxy_next_upstream vocabulary and its replay rules,
// decided in one place (as Caddy's tryAgain).

export type Cause = 'error' | 'timeout' | 'invalid_header' | 'digest' | `http_${number}`

/** Aborts an attempt whose status is listed in nextUpstream.on, to try the next server. */
export class RetryStatus extends Error {
  readonly status: number
  constructor (status: number) { super(`status ${status}`); this.status = status }
}

/** A response berth cannot pass on (header bytes Node refuses to send, a bad Range answer). */
export class InvalidResponse extends Error {}

/** What went wrong with one upstream attempt, in nginx's words. */
export function causeOf (err: Error & { code?: string }): Cause {
  if (err instanceof RetryStatus) return `http_${err.status}`
  if (err instanceof InvalidResponse) return 'invalid_header'
  switch (err.code) {
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
    case 'BERTH_ERR_UPSTREAM_TIMEOUT':
      return 'timeout'
  }
  if (typeof err.code === 'string' && err.code.startsWith('HPE_')) return 'invalid_header'
  return 'error'
}

/** Causes that count against the server (nginx's max_fails); an HTTP status is the server's answer. */
export function isServerFailure (cause: Cause): boolean {
  return cause === 'error' || cause === 'timeout' || cause === 'invalid_header' || cause === 'digest'
}

const BODY_METHODS = new Set(['POST', 'PATCH', 'PUT'])

/** Whether a request can be sent again elsewhere (nginx's rules, stricter for bodies). */
export function canReplay (method: string, hasBody: boolean, sent: boolean, nonIdempotent: boolean): boolean {
  if (!sent) return true // nothing reached the failed server; the body was not read
  if (hasBody) return false // a body that started streaming can never be replayed
  return !BODY_METHODS.has(method) || nonIdempotent
}

export interface RetryPolicy {
  /** nextUpstream.on */
  retryOn: ReadonlySet<string>
  /** nextUpstream.tries: most servers per request, 0 = every server once. */
  tries: number
  /** nextUpstream.timeout: ms for all tries, 0 = none. */
  timeout: number
  nonIdempotent: boolean
}

export interface Attempts {
  method: string
  hasBody: boolean
  /** The failed attempt reached its server (headers written). */
  sent: boolean
  /** Servers tried so far, and ms since the first try. */
  tried: number
  elapsed: number
  /** Whether the pool has a server not tried yet. */
  anotherServer: boolean
}

/** Whether the next server may be tried after `cause`, while nothing was sent to the client. */
export function tryAgain (policy: RetryPolicy, cause: Cause, a: Attempts): boolean {
  if (!policy.retryOn.has(cause)) return false
  if (!canReplay(a.method, a.hasBody, a.sent, policy.nonIdempotent)) return false
  if (policy.tries > 0 && a.tried >= policy.tries) return false
  if (policy.timeout > 0 && a.elapsed >= policy.timeout) return false
  return a.anotherServer
}
