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
  const body = fd.createReadStream({ start, end, highWaterMark: 256 << 10 })
  body.on('data', (chunk) => { request.bodyBytesSent += chunk.length })
  body.on('error', () => { res.destroy() })
  res.on('close', () => { body.destroy() })
  body.pipe(res)
  return true
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

const READ = 256 << 10

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
  let pending: Buffer | null = null
  const send = async (chunk: Buffer) => {
    request.bodyBytesSent += chunk.length
    if (!res.write(chunk) && !res.destroyed) await Promise.race([once(res, 'drain'), once(res, 'close')])
  }
  try {
    while (verifier.bytes < total && !res.destroyed) {
      const readable = state() === 'kept' ? total : fill.written
      if (readable <= verifier.bytes) {
        if (state() === 'dropped') break
        await advanced(fill, res)
        continue
      }
      const buffer = Buffer.allocUnsafe(Math.min(READ, readable - verifier.bytes))
      const { bytesRead } = await fd.read(buffer, 0, buffer.length, verifier.bytes)
      if (bytesRead === 0) break // the file is shorter than the fill said: never end cleanly
      const chunk = buffer.subarray(0, bytesRead)
      verifier.update(chunk)
      if (pending !== null) await send(pending)
      pending = chunk
    }
  } finally {
    await fd.close()
  }
  if (res.destroyed) return true
  if (verifier.bytes === total) {
    if (verifier.matches()) {
      request.bodyBytesSent += pending?.length ?? 0
      res.end(pending)
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
