// berth's public types and every Fastify decoration, in one leaf module: the contract between the
// built-in plugins, and the one a user's plugin gets (src/index.ts re-exports it). Nothing here runs.
import type { BerthConfig } from './config/schema.js'
import type { UpstreamPool } from './upstream/pool.js'
import type { BlobCache } from './cache/store.js'
import type { UserStore } from './auth/users.js'
import type { TokenIssuer } from './auth/token.js'
import type { ClusterState } from './cluster/state.js'
import type { Placement } from './cluster/placement.js'
import type { BerthUser, ResourceActions } from './auth/user.js'
import type { FastifyRequest } from 'fastify'
import type { Throttle } from './auth/throttle.js'
import type { TrustedProxies } from './net.js'
import type { Registry } from 'prom-client'
import type { AcmeCertificates } from './acme.js'

/** What a registry request asks for, parsed once from the request path. */
export interface RegistryAction {
  /** `base` is GET /v2/, `other` anything outside the registry API. */
  kind: 'base' | 'catalog' | 'manifest' | 'blob' | 'upload' | 'tags' | 'referrers' | 'other'
  /** Repository name, e.g. `team-a/app`; null for base, catalog and other. */
  repository: string | null
  /** Tag, digest or upload id after the kind segment; null when absent. */
  reference: string | null
}

export type { Action, AccessLimit, BerthUser, ResourceActions } from './auth/user.js'

/** A part of berth that follows reloads: it prepares the new state, then commits it (src/reload.ts). */
export interface Prepared {
  /** Swaps the prepared state in; must not fail. */
  commit (): void
  /** Drops what prepare built (the reload was refused elsewhere). */
  abort? (): void
}

export interface Reloadable {
  name: string
  /** Names of parts whose commit must come first (the probes follow the pool they probe). */
  after?: string[]
  prepare (next: BerthConfig): Promise<Prepared>
}

export interface AuthStats { successes: number, failures: number, throttled: number }

/** The identity sources and the throttle (read-only for plugins; status and metrics read them). */
export interface AuthState {
  /** The htpasswd users (`identities.users`). */
  users: UserStore
  /** Token mode's issuer (auth.token); null in edge mode. */
  token: TokenIssuer | null
  throttle: Throttle
  /** The WWW-Authenticate of a 401 for this request: Basic, or in token mode Bearer with the scopes and an error. */
  challenge (request: FastifyRequest, scopes?: string[], error?: string): string
  stats: AuthStats
  /** One throttled, counted password check from the request's client: the user, or throws 401/429/503. */
  attempt (request: FastifyRequest, user: string, password: string): Promise<BerthUser>
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The configuration berth runs with (read-only for plugins; a reload swaps it whole). */
    berthConfig: BerthConfig
    /** The upstream pool in force. */
    upstreams: UpstreamPool
    /** Registers a part that follows reloads. */
    onReload (part: Reloadable): void
    /** Applies a validated configuration (SIGHUP); resolves with what needs a restart, rejects when refused. */
    reload (next: BerthConfig): Promise<string[]>
    /** Reload outcomes so far. */
    reloads: { ok: number, failed: number }
    /**
     * What `berth reload` / `berth stop` reach through the admin listener: the process's own reload (re-read
     * the file, apply or refuse, say which) and drain. Null until `berth start` sets them (an app built by
     * buildApp alone, in tests or a host program, has no file to re-read).
     */
    control: { reload: (() => Promise<{ ok: boolean, message: string }>) | null, stop: (() => void) | null }
    /** When this process started serving (for /status). */
    startedAt: Date
    /** Certificates from an ACME CA (tls.acme); null otherwise. */
    acme: AcmeCertificates | null
    /** tls.acme.httpPort's plain listener (http-01 challenges, redirects); null without one. */
    acmeHttpServer?: import('node:http').Server | null
    /** A registry-shaped error to throw from a hook: `throw fastify.registryError(429, 'TOOMANYREQUESTS', '…')`. */
    registryError (statusCode: number, registryCode: string, message: string, detail?: unknown): Error
    /** Requests refused by load shedding so far. */
    pressureStats: { shed: number }
    /** Users, throttle and counters; only with an `auth` section. */
    authState: AuthState
    /** The replicas' shared state (`cluster`); null without one. */
    cluster: ClusterState | null
    /** Blob cache placement across replicas (`cluster.placement`); null without it. */
    placement: Placement | null
    /** What the access rules in force (and the user's limit) grant of `requested`; only with an `auth` section. */
    grantAccess (user: BerthUser | null, requested: ResourceActions[]): ResourceActions[]
    /** The admin listener's own Fastify instance (null when `admin` is not configured). */
    adminServer: FastifyInstance | null
    /** The blob cache; null when `cache` is not configured. */
    blobCache: BlobCache | null
    /** The load balancers whose forwarding headers are believed (`trustedProxies`). */
    trustedProxies: TrustedProxies
    /** berth's Prometheus registry (served at the admin listener's /metrics): add collectors to it. */
    metrics: Registry
  }
  interface FastifyContextConfig {
    /** The token endpoint (plugins/token.ts): authenticated by Basic or a certificate, never challenged for a Bearer. */
    berthToken?: boolean
  }
  interface FastifyRequest {
    /** The registry action of the path (plugins/request-target.ts). */
    registryAction: RegistryAction | null
    /** GET /v2/_catalog: the names the requester may see (set by the access rules); null = all. */
    catalogFilter: ((repository: string) => boolean) | null
    user: BerthUser | null
    /** The client's address: the peer, or what a trusted proxy forwarded. */
    clientAddress: string
    /** Whether the peer is a trusted proxy (its forwarding headers pass on). */
    viaTrustedProxy: boolean
    /** `host:port` of the upstream that served the request ('' if none, `cache` for a copy). */
    upstreamAddress: string
    /** Response body bytes written to the client (the access log's $body_bytes_sent). */
    bodyBytesSent: number
    /** Chunked request body bytes read so far (Content-Length bodies: see the header). */
    bodyBytesReceived: number
  }
}
