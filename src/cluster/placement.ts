// Blob cache placement across replicas: each digest has one owner among the members (rendezvous hashing:
// the member with the highest hash of member and digest; a member joining or leaving moves only its own
// share). A replica that misses a blob it does not own asks the owner, over the owner's internal listener,
// before the registry; the owner serves its copy or fills it from the registry once. The registries stay
// behind the owner as backups in the same pool, so an owner that is down costs a retry, never a failed
// pull. Members come from `cluster.placement.peers`, or from heartbeats in Redis.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import type { BerthConfig } from '../config/schema.js'
import { UpstreamPool } from '../upstream/pool.js'

export interface PlacementConfig { advertise: string, secret: string, peers?: string[], servername?: string }

const HEADER = 'x-berth-peer'
/** A request that came in on the internal listener with a valid peer signature (never hops again). */
const PEER = Symbol('berth.peer')
const HEARTBEAT = 2000
const MEMBER_TTL = 6000

/** Rendezvous hashing: the member whose hash with `key` is highest (ties broken by name). */
export function ownerOf (members: readonly string[], key: string): string | null {
  let best: string | null = null
  let bestScore = ''
  for (const m of members) {
    const score = createHash('sha256').update(`${m}\n${key}`).digest('hex')
    if (best === null || score > bestScore || (score === bestScore && m < best)) { best = m; bestScore = score }
  }
  return best
}

export const isPeerRequest = (req: IncomingMessage): boolean => (req as unknown as Record<symbol, boolean>)[PEER] === true

export class Placement {
  readonly config: PlacementConfig
  #members: string[]
  #pools = new Map<string, UpstreamPool>()
  #berth: BerthConfig
  #timer: NodeJS.Timeout | null = null
  /** Blob GETs sent to their owner, and those the owner answered itself (not a backup registry). */
  stats = { toOwner: 0 }

  constructor (config: PlacementConfig, berth: BerthConfig) {
    this.config = config
    this.#berth = berth
    this.#members = [...new Set([config.advertise, ...(config.peers ?? [])])].sort()
  }

  get members (): readonly string[] { return this.#members }

  /** Heartbeats in Redis (when no static peers): every member announces itself and reads the others. */
  start (redis: Redis, log: FastifyBaseLogger): void {
    if (this.config.peers !== undefined) return
    const beat = async (): Promise<void> => {
      const now = Date.now()
      try {
        await redis.zadd('members', String(now), this.config.advertise)
        await redis.zremrangebyscore('members', '0', String(now - MEMBER_TTL))
        const found = (await redis.zrange('members', '0', '-1')).sort()
        if (!found.includes(this.config.advertise)) found.push(this.config.advertise)
        if (found.join() !== this.#members.join()) log.info({ members: found }, 'cluster: cache placement members changed')
        this.#members = found
      } catch {} // Redis away: the last members known stay
    }
    void beat()
    this.#timer = setInterval(() => { void beat() }, HEARTBEAT)
    this.#timer.unref()
  }

  /** The pool to send a missed blob GET to: its owner first, the registries behind it; null when this replica owns it. */
  poolFor (digest: string): UpstreamPool | null {
    const owner = ownerOf(this.#members, digest)
    if (owner === null || owner === this.config.advertise) return null
    let pool = this.#pools.get(owner)
    if (pool === undefined) {
      const up = this.#berth.upstream
      const servers = [{ url: owner, weight: 1, maxFails: 1, failTimeout: 10_000, backup: false, servername: this.config.servername }, ...up.servers.map((s) => ({ ...s, backup: true }))]
      pool = new UpstreamPool({ ...this.#berth, upstream: { ...up, servers, healthCheck: undefined } })
      this.#pools.set(owner, pool)
    }
    this.stats.toOwner++
    return pool
  }

  /** The header a peer request carries: an HMAC of the path and an expiry, so that a copy is good for a minute, for that path. */
  sign (path: string, now = Date.now()): [string, string] {
    const expires = Math.floor(now / 1000) + 60
    return [HEADER, `${expires}.${createHmac('sha256', this.config.secret).update(`${expires}\n${path}`).digest('base64url')}`]
  }

  /** Marks `req` as a peer's when its signature is valid for its path; false otherwise. */
  admit (req: IncomingMessage, now = Date.now()): boolean {
    const value = req.headers[HEADER]
    const m = typeof value === 'string' ? /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(value) : null
    if (m === null || Number(m[1]) * 1000 < now) return false
    const expected = createHmac('sha256', this.config.secret).update(`${m[1]}\n${req.url ?? ''}`).digest()
    if (!timingSafeEqual(Buffer.from(m[2], 'base64url'), expected)) return false
    ;(req as unknown as Record<symbol, boolean>)[PEER] = true
    return true
  }

  async close (): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer)
    await Promise.all([...this.#pools.values()].map((p) => p.close()))
  }
}
