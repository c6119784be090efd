// What replicas share, on Redis (or Valkey), with kept libraries: ioredis for the connection (it
// reconnects by itself, so the shared counters resume when Redis is back, without a restart) and
// rate-limiter-flexible for the failure counters (an atomic INCR with expiry per address and per user).
// A lockout and an access key's revocation are published, so every replica applies them within
// milliseconds without asking Redis on each request. The credential cache stays local.
//
// Redis down: with failOpen (the default) each replica keeps counting on its own (src/auth/throttle.ts),
// says so once in the error log and on berth_cluster_redis_up; with failOpen false, logins get 503.
import type { FastifyBaseLogger } from 'fastify'
import { Redis, type RedisOptions } from 'ioredis'
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible'
import { readFileSync } from 'node:fs'
import { Throttle, type ThrottleLimits } from '../auth/throttle.js'

export interface ClusterConfig {
  redis: { url: string, tls: { ca?: string }, keyPrefix: string }
  failOpen: boolean
}

type Event = { kind: 'block', key: string, until: number } | { kind: 'revoke', id: string }

function redisOptions (config: ClusterConfig['redis']): RedisOptions {
  return {
    keyPrefix: config.keyPrefix,
    // Never queue commands while disconnected: a login must not wait for Redis to come back.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    retryStrategy: (times) => Math.min(times * 200, 2000),
    ...(config.url.startsWith('rediss://') ? { tls: config.tls.ca !== undefined ? { ca: readFileSync(config.tls.ca) } : {} } : {})
  }
}

export class ClusterState {
  readonly config: ClusterConfig
  readonly client: Redis
  #subscriber: Redis
  #log: FastifyBaseLogger
  #limiters: { address: RateLimiterRedis, user: RateLimiterRedis } | null = null
  #limits: ThrottleLimits
  /** Blocks other replicas (or this one, through Redis) published: key → until (ms). */
  #remote = new Map<string, number>()
  /** Access keys revoked anywhere (berth key revoke publishes them). */
  readonly revoked = new Set<string>()
  #up = false
  /** Redis failures seen (for the metric), and whether the last command reached it. */
  errors = 0

  constructor (config: ClusterConfig, limits: ThrottleLimits, log: FastifyBaseLogger) {
    this.config = config
    this.#limits = limits
    this.#log = log
    this.client = new Redis(config.redis.url, redisOptions(config.redis))
    // A subscribed connection can do nothing else: a second one (ioredis re-subscribes after a reconnect).
    // Its SUBSCRIBE waits for the connection (the offline queue), and ioredis renews it after every reconnect.
    this.#subscriber = new Redis(config.redis.url, { ...redisOptions(config.redis), keyPrefix: undefined, enableOfflineQueue: true, maxRetriesPerRequest: null })
    this.#limiters = this.#makeLimiters(limits)
    for (const c of [this.client, this.#subscriber]) c.on('error', () => {}) // state changes are logged below
    this.client.on('ready', () => { this.#setUp(true); void this.#loadRevoked() })
    this.client.on('end', () => { this.#setUp(false) })
    this.client.on('close', () => { this.#setUp(false) })
    this.#subscriber.on('message', (_channel: string, message: string) => { this.#apply(message) })
    void this.#subscriber.subscribe(this.#channel).catch(() => {})
  }

  get #channel (): string { return `${this.config.redis.keyPrefix}events` }

  #makeLimiters (limits: ThrottleLimits): { address: RateLimiterRedis, user: RateLimiterRedis } {
    const common = { storeClient: this.client, rejectIfRedisNotReady: true, duration: Math.max(1, Math.ceil(limits.window / 1000)), blockDuration: Math.max(1, Math.ceil(limits.block / 1000)) }
    return {
      address: new RateLimiterRedis({ ...common, keyPrefix: 'fail-addr', points: limits.failures + 1 }),
      user: new RateLimiterRedis({ ...common, keyPrefix: 'fail-user', points: limits.userFailures + 1 })
    }
  }

  /** New limits (a reload); the counters in Redis stay. */
  update (limits: ThrottleLimits): void {
    this.#limits = limits
    this.#limiters = this.#makeLimiters(limits)
  }

  get up (): boolean { return this.#up }

  #closing = false

  #setUp (up: boolean): void {
    if (up === this.#up || this.#closing) return
    this.#up = up
    if (up) this.#log.info({ redis: this.config.redis.url }, 'cluster: Redis reachable; failures are counted across replicas again')
    else this.#log.error({ redis: this.config.redis.url, failOpen: this.config.failOpen }, this.config.failOpen ? 'cluster: Redis unreachable; counting failed logins on this replica only until it is back' : 'cluster: Redis unreachable; logins fail closed (503) until it is back')
  }

  async #loadRevoked (): Promise<void> {
    try {
      for (const id of await this.client.smembers('revoked')) this.revoked.add(id)
    } catch { this.errors++ }
  }

  #apply (message: string): void {
    let e: Event
    try { e = JSON.parse(message) as Event } catch { return }
    if (e.kind === 'block' && typeof e.key === 'string' && typeof e.until === 'number') this.#remote.set(e.key, Math.max(e.until, this.#remote.get(e.key) ?? 0))
    else if (e.kind === 'revoke' && typeof e.id === 'string') this.revoked.add(e.id)
  }

  /** Milliseconds `key` stays blocked by a lockout published by any replica. */
  blockedFor (key: string, now = Date.now()): number {
    const until = this.#remote.get(key)
    if (until === undefined) return 0
    if (until <= now) { this.#remote.delete(key); return 0 }
    return until - now
  }

  get blockedKeys (): number { return this.#remote.size }

  /** Counts a failed login in Redis; when it blocks, every replica hears of it. Never throws. */
  async fail (key: string, now = Date.now()): Promise<void> {
    const limiter = key.startsWith('u:') ? this.#limiters?.user : this.#limiters?.address
    if (limiter === undefined || (key.startsWith('u:') && this.#limits.userFailures === 0)) return
    const limit = key.startsWith('u:') ? this.#limits.userFailures : this.#limits.failures
    let until: number
    try {
      // As the local throttle: the failure that reaches the limit blocks (rate-limiter-flexible would wait for one more).
      const res = await limiter.consume(key, 1)
      if (res.consumedPoints < limit) return
      await limiter.block(key, Math.max(1, Math.ceil(this.#limits.block / 1000)))
      until = now + this.#limits.block
    } catch (res) {
      if (!(res instanceof RateLimiterRes)) { this.errors++; return } // Redis did not answer: counted locally only
      until = now + res.msBeforeNext // blocked already (by another replica's failure a moment ago)
    }
    this.#remote.set(key, Math.max(until, this.#remote.get(key) ?? 0))
    await this.client.publish(this.#channel, JSON.stringify({ kind: 'block', key, until })).catch(() => { this.errors++ })
  }

  async close (): Promise<void> {
    this.#closing = true
    this.client.disconnect()
    this.#subscriber.disconnect()
  }
}

/** `berth key revoke` with a cluster: every replica refuses the key within a second, whatever its keys file says. */
export async function publishRevocation (config: ClusterConfig, id: string): Promise<void> {
  const client = new Redis(config.redis.url, { ...redisOptions(config.redis), enableOfflineQueue: true, lazyConnect: true })
  try {
    await client.connect()
    await client.sadd('revoked', id)
    await client.publish(`${config.redis.keyPrefix}events`, JSON.stringify({ kind: 'revoke', id }))
  } finally {
    client.disconnect()
  }
}

/**
 * The brute-force throttle of a replica in a cluster: its own counters (src/auth/throttle.ts, always kept:
 * they decide alone while Redis is away) and the lockouts every replica shares through Redis.
 */
export class SharedThrottle extends Throttle {
  readonly cluster: ClusterState
  constructor (limits: ThrottleLimits, cluster: ClusterState) {
    super(limits)
    this.cluster = cluster
  }

  override update (limits: ThrottleLimits): void {
    super.update(limits)
    this.cluster.update(limits)
  }

  override blockedFor (key: string, now = Date.now()): number {
    return Math.max(super.blockedFor(key, now), this.cluster.blockedFor(key, now))
  }

  override fail (key: string, now = Date.now()): boolean {
    void this.cluster.fail(key, now)
    return super.fail(key, now)
  }
}
