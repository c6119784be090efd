// The blob cache's store: one verified copy per digest on disk, least recently used out first, with
// room reserved for the fills in flight so that `maxSize` bounds the disk, and the per-repository
// confirmations that decide which repository a copy may be served for. Only this class changes them.
import { createWriteStream, type WriteStream } from 'node:fs'
import { mkdir, open, readdir, rm, stat, unlink, utimes, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import type { FastifyBaseLogger } from 'fastify'
import { checkable } from '../registry/digest.js'
import { Fill } from './fill.js'

/** How many (repository, digest) confirmations are remembered. */
const CONFIRMED_MAX = 100_000

export interface CacheStats { hits: number, misses: number, followers: number, fills: number, rejected: number, skipped: number, evictions: number, writeErrors: number }

export interface CacheOptions { dir: string, maxSize: number, confirmFor: number, log: FastifyBaseLogger }

export class BlobCache {
  readonly dir: string
  readonly maxSize: number
  readonly confirmFor: number
  readonly stats: CacheStats = { hits: 0, misses: 0, followers: 0, fills: 0, rejected: 0, skipped: 0, evictions: 0, writeErrors: 0 }
  readonly #log: FastifyBaseLogger
  /**
   * digest -> size; the Map's order is recency (least recently used first). Not lru-cache: what must fit
   * under maxSize is the copies plus the room reserved by fills in flight (bytes no entry holds yet), and
   * an eviction unlinks a file asynchronously; lru-cache bounds only its own entries and disposes
   * synchronously inside set(). A Map in insertion order is the whole of the LRU this needs.
   */
  readonly #entries = new Map<string, number>()
  #total = 0
  /** Bytes reserved by fills in flight: they count against maxSize before they are written. */
  #reserved = 0
  readonly #filling = new Map<string, Fill>()
  /** Downloads in flight that may start a fill, by digest: other misses wait for them (nginx's
   * proxy_cache_lock) instead of fetching the same blob again. */
  readonly #leaders = new Map<string, Promise<Fill | null>>()
  /** `${repository}@${digest}` -> until when the upstream's word is trusted; least recently used first. */
  readonly #confirmed = new Map<string, number>()
  #tmpCount = 0
  /** Opens a fill's temporary file for writing. Replaceable, to test how write errors are handled where a
   * small file system cannot be mounted. */
  openFile: (path: string) => WriteStream = (path) => createWriteStream(path, { flags: 'wx', highWaterMark: 1 << 20 })
  /** The write error last logged ("ENOSPC"), so that one condition is logged once, not per fill. */
  #failing: string | null = null

  private constructor (opts: CacheOptions) {
    this.dir = opts.dir
    this.maxSize = opts.maxSize
    this.confirmFor = opts.confirmFor
    this.#log = opts.log
  }

  /** Opens (or creates) the cache directory; copies already there count, oldest first by mtime. */
  static async open (opts: CacheOptions): Promise<BlobCache> {
    const cache = new BlobCache(opts)
    const { dir } = opts
    await rm(join(dir, 'tmp'), { recursive: true, force: true }) // fills cut short by a stop
    await mkdir(join(dir, 'tmp'), { recursive: true })
    const found: Array<{ digest: string, size: number, mtime: number }> = []
    for (const algorithm of ['sha256', 'sha512']) {
      await mkdir(join(dir, algorithm), { recursive: true })
      for (const name of await readdir(join(dir, algorithm))) {
        const digest = `${algorithm}:${name}`
        if (!checkable(digest)) continue
        const s = await stat(join(dir, algorithm, name))
        found.push({ digest, size: s.size, mtime: s.mtimeMs })
      }
    }
    for (const f of found.sort((a, b) => a.mtime - b.mtime)) cache.#add(f.digest, f.size)
    await cache.#evict()
    return cache
  }

  get size (): number { return this.#total }
  get reserved (): number { return this.#reserved }
  get count (): number { return this.#entries.size }

  path (digest: string): string {
    const [algorithm, hex] = digest.split(':')
    return join(this.dir, algorithm, hex)
  }

  /** The size of a cached copy, or undefined. */
  sizeOf (digest: string): number | undefined { return this.#entries.get(digest) }

  /** The fill in flight for `digest`, if any (other clients may follow it). */
  filling (digest: string): Fill | undefined { return this.#filling.get(digest) }

  /** The fill a download in flight for `digest` will start (null if it starts none), if one is in flight. */
  leader (digest: string): Promise<Fill | null> | undefined { return this.#leaders.get(digest) }

  /** Makes the caller the download other misses wait for; it calls the result once, with its fill or null. */
  lead (digest: string): (fill: Fill | null) => void {
    let resolve!: (fill: Fill | null) => void
    const started = new Promise<Fill | null>((r) => { resolve = r })
    this.#leaders.set(digest, started)
    let settled = false
    return (fill) => {
      if (settled) return
      settled = true
      if (this.#leaders.get(digest) === started) this.#leaders.delete(digest)
      resolve(fill)
    }
  }

  /** Whether the upstream confirmed, less than `confirmFor` ago, that `repository` holds `digest`. */
  confirmed (repository: string, digest: string, now = Date.now()): boolean {
    const key = `${repository}@${digest}`
    const until = this.#confirmed.get(key)
    if (until === undefined) return false
    this.#confirmed.delete(key)
    if (until <= now) return false // expired: a delete on the registry or its garbage collection must show
    this.#confirmed.set(key, until)
    return true
  }

  confirm (repository: string, digest: string, now = Date.now()): void {
    const key = `${repository}@${digest}`
    this.#confirmed.delete(key)
    if (this.confirmFor <= 0) return
    this.#confirmed.set(key, now + this.confirmFor)
    if (this.#confirmed.size > CONFIRMED_MAX) this.#confirmed.delete(this.#confirmed.keys().next().value as string)
  }

  /** The upstream said `repository` does not hold `digest` (a 404). */
  unconfirm (repository: string, digest: string): void {
    this.#confirmed.delete(`${repository}@${digest}`)
  }

  /** A blob or a manifest of `repository` was deleted: nothing remembered for it is trusted any longer. */
  forgetRepository (repository: string): void {
    const prefix = `${repository}@`
    for (const key of this.#confirmed.keys()) if (key.startsWith(prefix)) this.#confirmed.delete(key)
  }

  /**
   * A fill for a download of `size` bytes about to stream, or null: cached already, being filled, or no
   * room. The room is reserved now, evicting what it takes, so that fills in flight never push the disk
   * past maxSize; when even an empty cache could not hold it next to the other fills, it is not cached.
   */
  startFill (digest: string, size: number): Fill | null {
    if (this.#entries.has(digest) || this.#filling.has(digest)) return null
    if (size > this.maxSize - this.#reserved) { this.stats.skipped++; return null }
    this.#reserved += size
    void this.#evict()
    const tmp = join(this.dir, 'tmp', `${digest.replace(':', '-')}.${process.pid}.${this.#tmpCount++}`)
    const fill = new Fill(this, digest, size, tmp, this.openFile(tmp))
    this.#filling.set(digest, fill)
    return fill
  }

  /** Called by a Fill when it ends: kept (renamed into place) or not. */
  finished (fill: Fill, kept: boolean): void {
    this.#filling.delete(fill.digest)
    this.#reserved -= fill.expected
    if (!kept) { this.stats.rejected++; return }
    this.stats.fills++
    this.#add(fill.digest, fill.expected)
    if (this.#failing !== null) {
      this.#log.info({ dir: this.dir }, 'blob cache: writing works again')
      this.#failing = null
    }
    void this.#evict()
  }

  /** A fill could not write (a full disk, permissions, I/O, the directory removed): said once per condition. */
  writeFailed (err: NodeJS.ErrnoException): void {
    this.stats.writeErrors++
    const condition = err.code ?? err.message
    if (this.#failing === condition) return
    this.#failing = condition
    this.#log.error({ dir: this.dir, code: err.code, err: err.message }, 'blob cache: cannot write a copy; downloads continue without caching')
  }

  /** Opens a cached copy for reading and marks it recently used; null if it is gone. */
  async openCopy (digest: string): Promise<{ fd: FileHandle, size: number } | null> {
    const size = this.#entries.get(digest)
    if (size === undefined) return null
    try {
      const fd = await open(this.path(digest), 'r')
      this.#entries.delete(digest)
      this.#entries.set(digest, size)
      const now = new Date()
      void utimes(this.path(digest), now, now).catch(() => {}) // recency survives a restart
      return { fd, size }
    } catch {
      this.#remove(digest) // removed behind berth's back
      return null
    }
  }

  #add (digest: string, size: number): void {
    if (this.#entries.has(digest)) return
    this.#entries.set(digest, size)
    this.#total += size
  }

  #remove (digest: string): void {
    const size = this.#entries.get(digest)
    if (size === undefined) return
    this.#entries.delete(digest)
    this.#total -= size
  }

  /** Least recently used copies go until copies and reservations fit (a copy being read stays readable). */
  async #evict (): Promise<void> {
    while (this.#total + this.#reserved > this.maxSize && this.#entries.size > 0) {
      const oldest = this.#entries.keys().next().value as string
      this.#remove(oldest)
      this.stats.evictions++
      await unlink(this.path(oldest)).catch(() => {})
    }
  }
}
