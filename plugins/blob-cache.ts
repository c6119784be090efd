// The edge cache for blobs (`cache: { dir, maxSize }`), something nginx in front of a registry does not
// do safely: blobs are content-addressed, so a blob never changes, but a registry only serves it to a
// repository that contains it. berth keeps one copy per digest on disk, filled by a normal download as it
// streams to the client and kept only when the whole matches its digest; it serves a copy only for a
// repository the upstream has confirmed holds that blob (its own download, or a HEAD, remembered), after
// every access rule ran for the request, with Range support. Least recently used copies go first when
// `maxSize` is reached. The proxy (plugins/proxy.ts) decides per request; this file keeps the store.
import fp from 'fastify-plugin'
import { createHash, type Hash } from 'node:crypto'
import { createWriteStream, type WriteStream } from 'node:fs'
import { mkdir, open, readdir, rename, rm, stat, unlink, utimes } from 'node:fs/promises'
import { join } from 'node:path'
import type { ServerResponse } from 'node:http'
import type { FastifyRequest } from 'fastify'
import { API_VERSION, API_VERSION_HEADER } from '../src/errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The blob cache; null when `cache` is not configured. */
    blobCache: BlobCache | null
  }
}

/** Only digests whose algorithm berth can check, in their canonical form (also safe as file names). */
const CACHEABLE = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/
/** How many (repository, digest) confirmations are remembered. */
const CONFIRMED_MAX = 100_000

export interface CacheStats { hits: number, misses: number, fills: number, rejected: number, evictions: number }

/** A blob a request asks for, if the cache may answer it: GET or HEAD of /v2/<name>/blobs/<digest>. */
export function cacheableBlob (request: FastifyRequest): { repository: string, digest: string } | null {
  const a = request.registryAction
  const method = request.raw.method
  if (a === null || a.kind !== 'blob' || (method !== 'GET' && method !== 'HEAD')) return null
  if (a.repository === null || a.reference === null || !CACHEABLE.test(a.reference)) return null
  return { repository: a.repository, digest: a.reference }
}

/** One download being written to the cache while it streams to the client. */
export class Fill {
  readonly digest: string
  readonly expected: number
  readonly #cache: BlobCache
  readonly #tmp: string
  readonly #file: WriteStream
  readonly #hash: Hash
  #bytes = 0
  #done = false

  constructor (cache: BlobCache, digest: string, expected: number, tmp: string) {
    this.#cache = cache
    this.digest = digest
    this.expected = expected
    this.#tmp = tmp
    this.#file = createWriteStream(tmp, { flags: 'wx', highWaterMark: 1 << 20 })
    this.#file.on('error', () => { this.abort() }) // a full disk costs the copy, never the download
    this.#hash = createHash(digest.startsWith('sha512:') ? 'sha512' : 'sha256')
  }

  get needDrain (): boolean { return this.#file.writableNeedDrain }
  onDrain (fn: () => void): void { this.#file.on('drain', fn) }

  /** false: the file is behind; wait for onDrain before sending more (the client gets it at disk speed). */
  write (chunk: Buffer): boolean {
    if (this.#done) return true
    this.#bytes += chunk.length
    this.#hash.update(chunk)
    return this.#file.write(chunk)
  }

  /** The download ended cleanly: keep the copy if it is the blob the digest names, whole. */
  async commit (): Promise<boolean> {
    if (this.#done) return false
    this.#done = true
    await new Promise<void>((resolve) => this.#file.end(resolve))
    const got = `${this.digest.split(':')[0]}:${this.#hash.digest('hex')}`
    if (got !== this.digest || this.#bytes !== this.expected || this.#file.errored !== null) {
      this.#cache.finished(this, false)
      await rm(this.#tmp, { force: true })
      return false
    }
    await rename(this.#tmp, this.#cache.path(this.digest))
    this.#cache.finished(this, true)
    return true
  }

  /** The download failed or the client left: nothing is kept. */
  abort (): void {
    if (this.#done) return
    this.#done = true
    this.#cache.finished(this, false)
    this.#file.destroy()
    void rm(this.#tmp, { force: true })
  }
}

export class BlobCache {
  readonly dir: string
  maxSize: number
  /** digest -> size; the Map's order is recency (least recently used first). */
  readonly #entries = new Map<string, number>()
  #total = 0
  readonly #filling = new Set<string>()
  /** `${repository}@${digest}` the upstream confirmed -> until when that is trusted; least recently used first. */
  readonly #confirmed = new Map<string, number>()
  /** How long a confirmation is trusted (ms). */
  confirmFor: number
  #tmpCount = 0
  readonly stats: CacheStats = { hits: 0, misses: 0, fills: 0, rejected: 0, evictions: 0 }

  private constructor (dir: string, maxSize: number, confirmFor: number) {
    this.dir = dir
    this.maxSize = maxSize
    this.confirmFor = confirmFor
  }

  /** Opens (or creates) the cache directory; copies already there count, oldest first by mtime. */
  static async open (dir: string, maxSize: number, confirmFor = 300_000): Promise<BlobCache> {
    const cache = new BlobCache(dir, maxSize, confirmFor)
    await rm(join(dir, 'tmp'), { recursive: true, force: true }) // fills cut short by a stop
    await mkdir(join(dir, 'tmp'), { recursive: true })
    const found: Array<{ digest: string, size: number, mtime: number }> = []
    for (const algorithm of ['sha256', 'sha512']) {
      await mkdir(join(dir, algorithm), { recursive: true })
      for (const name of await readdir(join(dir, algorithm))) {
        const digest = `${algorithm}:${name}`
        if (!CACHEABLE.test(digest)) continue
        const s = await stat(join(dir, algorithm, name))
        found.push({ digest, size: s.size, mtime: s.mtimeMs })
      }
    }
    for (const f of found.sort((a, b) => a.mtime - b.mtime)) cache.#add(f.digest, f.size)
    await cache.#evict()
    return cache
  }

  get size (): number { return this.#total }
  get count (): number { return this.#entries.size }

  path (digest: string): string {
    const [algorithm, hex] = digest.split(':')
    return join(this.dir, algorithm, hex)
  }

  /** The size of a cached copy, or undefined. */
  sizeOf (digest: string): number | undefined { return this.#entries.get(digest) }

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

  /** A fill for a download about to stream, or null: cached already, being filled, or too big to keep. */
  startFill (digest: string, size: number): Fill | null {
    if (this.#entries.has(digest) || this.#filling.has(digest) || size > this.maxSize) return null
    this.#filling.add(digest)
    return new Fill(this, digest, size, join(this.dir, 'tmp', `${digest.replace(':', '-')}.${process.pid}.${this.#tmpCount++}`))
  }

  /** Called by a Fill when it ends. */
  finished (fill: Fill, kept: boolean): void {
    this.#filling.delete(fill.digest)
    if (!kept) { this.stats.rejected++; return }
    this.stats.fills++
    this.#add(fill.digest, fill.expected)
    void this.#evict()
  }

  /** Opens a cached copy for reading and marks it recently used; null if it is gone. */
  async openCopy (digest: string): Promise<{ fd: import('node:fs/promises').FileHandle, size: number } | null> {
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

  /** Least recently used copies go until the total fits (a copy being read stays readable until closed). */
  async #evict (): Promise<void> {
    while (this.#total > this.maxSize && this.#entries.size > 0) {
      const oldest = this.#entries.keys().next().value as string
      this.#remove(oldest)
      this.stats.evictions++
      await unlink(this.path(oldest)).catch(() => {})
    }
  }
}

/** Parses a single `bytes=` range against `size`: null = whole body; 'unsatisfiable' = 416. */
export function parseRange (header: string | undefined, size: number): { start: number, end: number } | 'unsatisfiable' | null {
  if (header === undefined) return null
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (m === null || (m[1] === '' && m[2] === '')) return null // several ranges or another unit: the whole
  if (m[1] === '') {
    const suffix = Number(m[2])
    if (suffix === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(m[1])
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
  if (start >= size || end < start) return 'unsatisfiable'
  return { start, end }
}

/**
 * Answers a GET or HEAD of a cached blob from disk, as the registry would (its headers, Range). Returns
 * false without answering when the copy is gone: the caller forwards the request instead.
 */
export async function serveCopy (cache: BlobCache, request: FastifyRequest, res: ServerResponse, digest: string): Promise<boolean> {
  const copy = await cache.openCopy(digest)
  if (copy === null) return false
  const { fd, size } = copy
  const range = parseRange(request.raw.headers.range, size)
  const headers: Record<string, string | number> = {
    'content-type': 'application/octet-stream',
    'docker-content-digest': digest,
    etag: `"${digest}"`,
    'accept-ranges': 'bytes',
    'cache-control': 'max-age=31536000',
    [API_VERSION_HEADER]: API_VERSION
  }
  cache.stats.hits++
  request.upstreamAddress = 'cache'
  if (range === 'unsatisfiable') {
    await fd.close()
    res.writeHead(416, { ...headers, 'content-range': `bytes */${size}`, 'content-length': 0 })
    res.end()
    return true
  }
  const { start, end } = range ?? { start: 0, end: size - 1 }
  const length = size === 0 ? 0 : end - start + 1
  res.writeHead(range === null ? 200 : 206, {
    ...headers,
    'content-length': length,
    ...(range === null ? {} : { 'content-range': `bytes ${start}-${end}/${size}` })
  })
  if (request.raw.method === 'HEAD' || length === 0) {
    await fd.close()
    res.end()
    return true
  }
  const body = fd.createReadStream({ start, end, highWaterMark: 256 << 10 })
  body.on('data', (chunk) => { request.bodyBytesSent += chunk.length })
  body.on('error', () => { res.destroy() })
  res.on('close', () => { body.destroy() })
  body.pipe(res)
  return true
}

export default fp(async function blobCache (fastify) {
  const cfg = fastify.berthConfig.cache
  const cache = cfg === undefined ? null : await BlobCache.open(cfg.dir, cfg.maxSize, cfg.confirmFor)
  fastify.decorate('blobCache', cache)
  if (cache !== null) fastify.log.info({ dir: cache.dir, blobs: cache.count, bytes: cache.size, maxSize: cache.maxSize }, 'blob cache open')
}, { name: 'berth-blob-cache', fastify: '5.x' })
