// Access keys for machines (CI jobs, robots): a secret used as the password of `docker login`, bound to a
// user, a set of repositories and actions, and an expiry. The file holds each key's SHA-256, never the
// secret: a key is 256 random bits, so a fast hash is enough (a slow one would only cost every request),
// and the comparison is constant-time. The file is watched like the htpasswd file: a revocation or an
// expiry applies within a second.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import type { FastifyBaseLogger } from 'fastify'
import writeFileAtomic from 'write-file-atomic'
import { globLimit } from './rules.js'
import { watchPath } from './watch.js'
import type { BerthUser } from '../types.js'

export interface AccessKey {
  id: string
  user: string
  repositories: string[]
  actions: string[]
  /** ISO dates; expires null = never. */
  created: string
  expires: string | null
  revoked: string | null
  /** Hex SHA-256 of the secret. */
  sha256: string
}

const SECRET = /^berth_([0-9a-f]{12})_[A-Za-z0-9_-]{43}$/
const ACTIONS = new Set(['pull', 'push', 'delete', 'catalog'])
const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest()

/** Whether a password has the shape of an access key (such a password never reaches the htpasswd check). */
export const isKeySecret = (password: string): boolean => SECRET.test(password)

/** The problems of a keys file's content, each naming the key and the field. */
function parseKeys (text: string, file: string): AccessKey[] {
  let doc: unknown
  try { doc = JSON.parse(text) } catch (err) { throw new Error(`${file}: not JSON (${(err as Error).message})`) }
  const keys = (doc as { keys?: unknown }).keys
  if (!Array.isArray(keys)) throw new Error(`${file}: expected { "keys": [ … ] }`)
  for (const [i, k] of (keys as AccessKey[]).entries()) {
    const bad = (what: string) => new Error(`${file}: keys[${i}]: ${what}`)
    if (typeof k?.id !== 'string' || !/^[0-9a-f]{12}$/.test(k.id)) throw bad('id: expected 12 hex digits')
    if (typeof k.user !== 'string' || k.user === '') throw bad('user: expected a user name')
    if (!Array.isArray(k.repositories) || k.repositories.length === 0) throw bad('repositories: expected a list of globs')
    if (!Array.isArray(k.actions) || k.actions.some((a) => !ACTIONS.has(a))) throw bad('actions: expected pull, push, delete, catalog')
    if (typeof k.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(k.sha256)) throw bad('sha256: expected 64 hex digits')
    if (k.expires !== null && Number.isNaN(Date.parse(k.expires))) throw bad('expires: expected an ISO date or null')
  }
  return keys as AccessKey[]
}

async function readKeys (file: string): Promise<AccessKey[]> {
  let text: string
  try { text = await readFile(file, 'utf8') } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  return parseKeys(text, file)
}

export type KeyStatus = 'active' | 'expired' | 'revoked'
export function keyStatus (k: AccessKey, now = Date.now()): KeyStatus {
  if (k.revoked !== null) return 'revoked'
  return k.expires !== null && Date.parse(k.expires) <= now ? 'expired' : 'active'
}

export class KeyStore {
  readonly file: string
  #byId = new Map<string, AccessKey>()
  #unwatch: (() => void) | null = null

  private constructor (file: string) { this.file = file }

  static async open (file: string): Promise<KeyStore> {
    const store = new KeyStore(file)
    await store.reload()
    return store
  }

  get size (): number { return this.#byId.size }

  async reload (): Promise<void> {
    this.#byId = new Map((await readKeys(this.file)).map((k) => [k.id, k]))
  }

  /** The user the key stands for, bounded by the key's scope; null for a wrong, expired or revoked key. */
  verify (user: string, secret: string, now = Date.now()): BerthUser | null {
    const m = SECRET.exec(secret)
    const key = m === null ? undefined : this.#byId.get(m[1])
    // Hash and compare whether or not the id exists: the answer's time says nothing about which ids do.
    const equal = timingSafeEqual(sha256(secret), key === undefined ? sha256('') : Buffer.from(key.sha256, 'hex'))
    if (key === undefined || !equal || key.user !== user || keyStatus(key, now) !== 'active') return null
    return { name: key.user, via: 'key', key: key.id, limit: globLimit(key.repositories, key.actions) }
  }

  /** Whether a key (of a token issued for it) is still in force. */
  active (id: string, now = Date.now()): boolean {
    const key = this.#byId.get(id)
    return key !== undefined && keyStatus(key, now) === 'active'
  }

  watch (log: FastifyBaseLogger, interval = 500): void {
    if (this.#unwatch !== null) return
    this.#unwatch = watchPath(this.file, () => this.reload().then(
      () => log.info({ file: this.file, keys: this.#byId.size }, 'access keys reloaded'),
      (err: Error) => log.error({ file: this.file, problem: err.message }, 'access keys not reloaded; the previous keys stay in force')
    ), interval)
  }

  close (): void {
    this.#unwatch?.()
    this.#unwatch = null
  }
}

/** `berth key create`: adds a key to the file (created 0600 if missing); returns it and its secret, shown once. */
export async function createKey (file: string, opts: { user: string, repositories: string[], actions: string[], expiresIn: number | null }, now = new Date()): Promise<{ key: AccessKey, secret: string }> {
  const keys = await readKeys(file)
  const id = randomBytes(6).toString('hex')
  const secret = `berth_${id}_${randomBytes(32).toString('base64url')}`
  const key: AccessKey = {
    id,
    user: opts.user,
    repositories: opts.repositories,
    actions: opts.actions,
    created: now.toISOString(),
    expires: opts.expiresIn === null ? null : new Date(now.getTime() + opts.expiresIn).toISOString(),
    revoked: null,
    sha256: sha256(secret).toString('hex')
  }
  await writeKeys(file, [...keys, key])
  return { key, secret }
}

/** `berth key revoke ID`: marks the key revoked (kept, so `berth key list` still shows it). */
export async function revokeKey (file: string, id: string, now = new Date()): Promise<AccessKey> {
  const keys = await readKeys(file)
  const key = keys.find((k) => k.id === id)
  if (key === undefined) throw new Error(`no key ${id} in ${file}`)
  if (key.revoked === null) key.revoked = now.toISOString()
  await writeKeys(file, keys)
  return key
}

export async function listKeys (file: string): Promise<AccessKey[]> { return await readKeys(file) }

async function writeKeys (file: string, keys: AccessKey[]): Promise<void> {
  await writeFileAtomic(file, JSON.stringify({ keys }, null, 2) + '\n', { mode: 0o600 })
}
