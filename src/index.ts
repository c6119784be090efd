// berth's public types: the contract between built-in plugins and the plugins users write.
import type { BerthConfig } from './config/schema.js'
import type { UpstreamPool } from '../plugins/upstream-pool.js'
import type { Reloadable } from './reload.js'

export type { BerthConfig, BerthConfigInput } from './config/schema.js'
export type { UpstreamPool, Upstream } from '../plugins/upstream-pool.js'
export { loadConfig, parseConfig } from './config/load.js'
export { buildApp } from './app.js'
export { registryError } from './errors.js'
export type { Reloadable, Prepared } from './reload.js'

/** What a registry request asks for, parsed once from the request path. */
export interface RegistryAction {
  /** `base` is GET /v2/, `other` anything outside the registry API. */
  kind: 'base' | 'catalog' | 'manifest' | 'blob' | 'upload' | 'tags' | 'referrers' | 'other'
  /** Repository name, e.g. `team-a/app`; null for base, catalog and other. */
  repository: string | null
  /** Tag, digest or upload id after the kind segment; null when absent. */
  reference: string | null
}

/** The authenticated user (set by the auth plugin); null when anonymous. */
export interface BerthUser {
  name: string
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The configuration berth runs with (read-only for plugins; a reload swaps it whole). */
    berthConfig: BerthConfig
    upstreams: UpstreamPool
    /** Registers a part that follows reloads (see src/reload.ts). */
    onReload (part: Reloadable): void
    /** Applies a validated configuration (SIGHUP); resolves with what needs a restart, rejects when refused. */
    reload (next: BerthConfig): Promise<string[]>
    /** Reload outcomes so far. */
    reloads: { ok: number, failed: number }
    /** A registry-shaped error to throw from a hook: `throw fastify.registryError(429, 'TOOMANYREQUESTS', '…')`. */
    registryError (statusCode: number, registryCode: string, message: string, detail?: unknown): Error
    /** Requests refused by load shedding so far. */
    pressureStats: { shed: number }
  }
  interface FastifyRequest {
    registryAction: RegistryAction | null
    user: BerthUser | null
    /** `host:port` of the upstream that served the request ('' if none). */
    upstreamAddress: string
    /** Response body bytes written to the client. */
    bodyBytesSent: number
    /** Chunked request body bytes read so far (Content-Length bodies: see the header). */
    bodyBytesReceived: number
  }
}
