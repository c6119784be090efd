// The users of an htpasswd file: verification with a credential cache, and a watch that swaps in a
// changed file (kept as it was when the new one is broken).
import { hash, randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { watchPath } from './watch.js'
import type { FastifyBaseLogger } from 'fastify'
import { LRUCache } from 'lru-cache'
import { parseHtpasswd, verifyHash, dummyEntry, type HtpasswdEntry } from './htpasswd.js'
import { ConfigError } from '../errors.js'

/**
 * Verified credentials, keyed by a SHA-256 of a per-process random secret, user and password: the password
 * is never stored, and a bcrypt cost-12 user costs one hash per credential instead of one per request.
 * Bounded, least recently used out first. Failures are never cached.
 * One-shot crypto.hash() rather than an HMAC object: a quarter of the cost, and for an exact-match key
 * behind a secret prefix the HMAC construction adds nothing (length extension yields no collision).
 */
export class CredentialCache<V extends {} = string> {
  #secret = randomBytes(32).toString('latin1')
  /** null when max is 0: no cache. */
  #lru: LRUCache<string, V> | null
  readonly max: number

  /** `ttl` (ms): how long an entry is believed (a directory's answer may change); 0 = until evicted. */
  constructor (max: number, ttl = 0) {
    this.max = max
    this.#lru = max > 0 ? new LRUCache<string, V>({ max, ...(ttl > 0 ? { ttl } : {}) }) : null
  }

  keyOf (user: string, password: string): string {
    // The user's length first: "a\0b" + "c" and "a" + "b\0c" must not share a key.
    return hash('sha256', `${this.#secret}${user.length}:${user}\0${password}`, 'base64')
  }

  get (key: string): V | undefined { return this.#lru?.get(key) }

  set (key: string, value: V): void { this.#lru?.set(key, value) }

  clear (): void { this.#lru?.clear() }

  #inFlight = new Map<string, Promise<V | null>>()
  /**
   * The value remembered for (user, password) when `valid` accepts it; else the check already under way for
   * the same credential (32 connections opening with one bcrypt credential hash it once); else `run(key)`.
   * `run` caches what it verified itself (set), so that it can decline when the source changed meanwhile.
   */
  async lookup (user: string, password: string, valid: (v: V) => boolean, run: (key: string) => Promise<V | null>): Promise<V | null> {
    const key = this.keyOf(user, password)
    const cached = this.get(key)
    if (cached !== undefined && valid(cached)) return cached
    const pending = this.#inFlight.get(key)
    if (pending !== undefined) return await pending
    const check = run(key).finally(() => this.#inFlight.delete(key))
    this.#inFlight.set(key, check)
    return await check
  }
  get size (): number { return this.#lru?.size ?? 0 }
}

async function load (file: string | null): Promise<{ users: Map<string, HtpasswdEntry>, dummy: Pick<HtpasswdEntry, 'kind' | 'hash'> }> {
  if (file === null) return { users: new Map(), dummy: await dummyEntry(new Map()) }
  let text: string
  try { text = await readFile(file, 'utf8') } catch (err) {
    throw new ConfigError(file, [`cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`])
  }
  const { users, problems } = parseHtpasswd(text, file)
  if (problems.length > 0) throw new ConfigError(file, problems.map((p) => p.slice(file.length + 1).replace(/^(\d+):/, 'line $1:')))
  return { users, dummy: await dummyEntry(users) }
}

export class UserStore {
  /** null: no htpasswd file (users come from elsewhere: LDAP, client certificates, access keys). */
  readonly file: string | null
  readonly cache: CredentialCache
  #users: Map<string, HtpasswdEntry>
  #dummy: Pick<HtpasswdEntry, 'kind' | 'hash'>
  #unwatch: (() => void) | null = null
  #generation = 0
  /** Hash verifications run (cache hits and coalesced checks run none; unknown users run one). */
  hashChecks = 0

  private constructor (file: string | null, cacheSize: number, loaded: Awaited<ReturnType<typeof load>>) {
    this.file = file
    this.cache = new CredentialCache(cacheSize)
    this.#users = loaded.users
    this.#dummy = loaded.dummy
  }

  static async open (file: string | null, cacheSize: number): Promise<UserStore> {
    return new UserStore(file, cacheSize, await load(file))
  }

  get size (): number { return this.#users.size }

  has (user: string): boolean { return this.#users.has(user) }

  /** The user's name when the password is right, else null. Unknown users cost a dummy verification. */
  async verify (user: string, password: string): Promise<string | null> {
    return await this.cache.lookup(user, password, (v) => v === user, async (key) => await this.#check(key, user, password))
  }

  async #check (key: string, user: string, password: string): Promise<string | null> {
    const generation = this.#generation
    const entry = this.#users.get(user)
    const ok = await this.#verifyHash(entry ?? this.#dummy, password)
    // Stryker disable next-line ConditionalExpression,LogicalOperator: `entry === undefined` only matters if the random dummy matched
    if (!ok || entry === undefined) return null
    // A reload while hashing must not cache a credential of the old file.
    if (generation === this.#generation) this.cache.set(key, user)
    return user
  }

  #verifyHash (entry: Pick<HtpasswdEntry, 'kind' | 'hash'>, password: string): Promise<boolean> {
    this.hashChecks++
    return verifyHash(entry, password)
  }

  async reload (): Promise<void> {
    const loaded = await load(this.file)
    this.#users = loaded.users
    this.#dummy = loaded.dummy
    this.#generation++
    this.cache.clear()
  }

  /** Polls the file (a rename by an editor or `htpasswd` is seen too); a change applies within ~1 s. */
  watch (log: FastifyBaseLogger, interval = 500): void {
    if (this.#unwatch !== null || this.file === null) return
    const file = this.file
    this.#unwatch = watchPath(file, () => this.reload().then(
      () => log.info({ file, users: this.#users.size }, 'htpasswd reloaded'),
      (err: Error) => log.error({ file, problems: (err as ConfigError).problems ?? [err.message] }, 'htpasswd not reloaded; the previous users stay in force')
    ), interval)
  }

  close (): void {
    this.#unwatch?.()
    this.#unwatch = null
  }
}
