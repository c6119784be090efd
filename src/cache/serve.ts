// Answering a blob from the cache as the registry would (its headers, Range), from a finished copy or
// from a fill still growing.
import rangeParser from 'range-parser'
import { once } from 'node:events'
import type { ServerResponse } from 'node:http'
import { open, type FileHandle } from 'node:fs/promises'
import type { FastifyRequest } from 'fastify'
import { API_VERSION, API_VERSION_HEADER } from '../errors.js'
import { DigestVerifier } from '../registry/digest.js'
import type { BlobCache } from './store.js'
import type { Fill, FillState } from './fill.js'

/** The headers distribution sends with a blob. */
function blobHeaders (digest: string): Record<string, string | number> {
  return {
    'content-type': 'application/octet-stream',
    'docker-content-digest': digest,
    etag: `"${digest}"`,
    'accept-ranges': 'bytes',
    'cache-control': 'max-age=31536000',
    [API_VERSION_HEADER]: API_VERSION
  }
}

/**
 * A single `bytes=` range against `size` (range-parser): null = the whole body (no header, another unit,
 * a malformed header, or several ranges: berth sends no multipart answers); 'unsatisfiable' = 416.
 */
export function parseRange (header: string | undefined, size: number): { start: number, end: number } | 'unsatisfiable' | null {
  if (header === undefined) return null
  const ranges = rangeParser(size, header.trim())
  if (ranges === -1) return 'unsatisfiable'
  if (ranges === -2 || ranges.type !== 'bytes' || ranges.length !== 1) return null
  return { start: ranges[0].start, end: ranges[0].end }
}

/**
 * Answers a GET or HEAD of a cached blob from disk. Returns false without answering when the copy is
 * gone: the caller forwards the request instead.
 */
export async function serveCopy (cache: BlobCache, request: FastifyRequest, res: ServerResponse, digest: string): Promise<boolean> {
  const copy = await cache.openCopy(digest)
  if (copy === null) return false
  const { fd, size } = copy
  const range = parseRange(request.raw.headers.range, size)
  const headers = blobHeaders(digest)
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
  void sendRange(fd, res, start, end, (n) => { request.bodyBytesSent += n })
  return true
}

const READ = 256 << 10

/**
 * Read buffers, reused: a fresh 256 KiB buffer per read (fs.createReadStream's way) is memory outside the
 * V8 heap that makes V8 run a full collection every few dozen megabytes sent, a fifth of the CPU of a
 * cached download. A buffer comes back once the write that carried it completed (its bytes were
 * encrypted and handed on); a handful is kept.
 */
const spare: Buffer[] = []
const SPARE = 8
function release (buffer: Buffer): void { if (spare.length < SPARE) spare.push(buffer) }

/** Up to READ bytes of `fd` at `at` (no more than `last` - `at` + 1), into a spare buffer. */
async function readAt (fd: FileHandle, at: number, last: number): Promise<{ buffer: Buffer, chunk: Buffer }> {
  const buffer = spare.pop() ?? Buffer.allocUnsafeSlow(READ)
  const { bytesRead } = await fd.read(buffer, 0, Math.min(READ, last - at + 1), at)
  return { buffer, chunk: buffer.subarray(0, bytesRead) }
}

/**
 * Sends bytes `start`..`end` of `fd` and ends the response, reading the next piece while the last one is
 * written; the client's pace decides (a write that fills the socket waits for 'drain'). A read error or
 * a file shorter than it was cuts the connection (the length was promised); the file is closed at the end.
 */
async function sendRange (fd: FileHandle, res: ServerResponse, start: number, end: number, sent: (n: number) => void): Promise<void> {
  let next: Promise<{ buffer: Buffer, chunk: Buffer }> | null = readAt(fd, start, end)
  try {
    for (let at = start; next !== null;) {
      const { buffer, chunk } = await next
      next = null
      if (res.destroyed) { release(buffer); return }
      if (chunk.length === 0) { res.destroy(); return }
      at += chunk.length
      if (at <= end) next = readAt(fd, at, end)
      sent(chunk.length)
      if (!res.write(chunk, () => { release(buffer) })) await writable(res)
    }
    if (!res.destroyed) res.end()
  } catch {
    res.destroy()
  } finally {
    // A read still under way when the client went: let it finish (and fail quietly) before closing.
    if (next !== null) await next.then(({ buffer }) => { release(buffer) }, () => {})
    await fd.close().catch(() => {})
  }
}

/** Resolves on the response's next 'drain' or its 'close', whichever comes first. */
function writable (res: ServerResponse): Promise<void> {
  if (res.destroyed) return Promise.resolve()
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done)
      res.off('close', done)
      resolve()
    }
    res.on('drain', done)
    res.on('close', done)
  })
}

/** Resolves when the fill has more bytes or is final, or the client went. */
function advanced (fill: Fill, res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      fill.off('progress', done)
      fill.off('done', done)
      res.off('close', done)
      resolve()
    }
    fill.on('progress', done)
    fill.on('done', done)
    res.on('close', done)
  })
}

/**
 * A GET of a blob that another download is filling: read the file as it grows, at this client's own pace,
 * hashing what it sends and holding its last bytes back until the digest matched. If the fill is dropped
 * before the end, `resume` continues from the upstream where this client is. Resolves false without
 * answering when the fill is already over (the caller serves the copy or forwards the request).
 */
export async function followFill (fill: Fill, request: FastifyRequest, res: ServerResponse, resume: (verifier: DigestVerifier) => void): Promise<boolean> {
  // Read afresh each time: the fill moves on while this awaits.
  const state = (): FillState => fill.state
  if (state() !== 'filling') return false
  let fd: FileHandle
  try {
    fd = await open(fill.tmp, 'r')
  } catch {
    // Renamed into place (or dropped) while this opened it: wait for the verdict, then the caller serves
    // the copy, or fetches.
    if (state() === 'filling') await once(fill, 'done')
    return false
  }
  if (state() === 'dropped') { await fd.close(); return false }
  const total = fill.expected
  const verifier = new DigestVerifier(fill.digest, total)
  request.upstreamAddress = 'cache'
  res.writeHead(200, { ...blobHeaders(fill.digest), 'content-length': total })
  // The last piece read, held back until the next one (or the digest's verdict) came.
  let pending: { buffer: Buffer, chunk: Buffer } | null = null
  const send = async ({ buffer, chunk }: { buffer: Buffer, chunk: Buffer }) => {
    request.bodyBytesSent += chunk.length
    if (!res.write(chunk, () => { release(buffer) })) await writable(res)
  }
  try {
    while (verifier.bytes < total && !res.destroyed) {
      const readable = state() === 'kept' ? total : fill.written
      if (readable <= verifier.bytes) {
        if (state() === 'dropped') break
        await advanced(fill, res)
        continue
      }
      const read = await readAt(fd, verifier.bytes, readable - 1)
      if (read.chunk.length === 0) break // the file is shorter than the fill said: never end cleanly
      verifier.update(read.chunk)
      if (pending !== null) await send(pending)
      pending = read
    }
  } finally {
    await fd.close()
  }
  if (res.destroyed) return true
  if (verifier.bytes === total) {
    if (verifier.matches()) {
      request.bodyBytesSent += pending?.chunk.length ?? 0
      res.end(pending?.chunk)
    } else {
      request.log.error({ digest: fill.digest }, 'a cached blob does not match its digest: connection closed')
      res.destroy()
    }
    return true
  }
  if (state() === 'dropped' && pending !== null) await send(pending)
  if (state() === 'dropped' && !res.destroyed) resume(verifier)
  else res.destroy()
  return true
}
