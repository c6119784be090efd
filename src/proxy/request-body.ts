// The request body on its way upstream: none, the request itself (framed by Content-Length; the body
// limit refused a larger one up front), or for a chunked body a counted stream that the limit cuts.
import { Transform, type Readable } from 'node:stream'
import type { FastifyRequest } from 'fastify'
import { BodyTooLargeError } from '../errors.js'
import { formatSize } from '../config/units.js'

export function requestBody (request: FastifyRequest, limit: number): Readable | null {
  const req = request.raw
  const cl = req.headers['content-length']
  if (cl !== undefined) return cl === '0' ? null : req
  if (req.headers['transfer-encoding'] === undefined) return null
  return counted(request, limit > 0 ? limit : Infinity)
}

/**
 * The size of the chunks a chunked body goes upstream in. undici frames each chunk with 8 bytes
 * ("\r\n", four hex digits, "\r\n") written together with it, and Node's TLS writes that as records of
 * 16 KiB: a chunk as the client's records brought it (16 KiB each) became a full record and one of 8
 * bytes, twice the records for the registry to read (15-20 % more of its CPU for an upload). A chunk of
 * 64 KiB less 8 bytes makes exactly four full records, and a quarter of the writes.
 */
export const UPSTREAM_CHUNK = 64 * 1024 - 8

/**
 * A chunked body, counted on its way through (also for the metrics) and gathered into UPSTREAM_CHUNK
 * pieces; what has come when the client pauses goes on at once (after the I/O that brought it), so a
 * slow client's bytes are never held back. A stream, not an async generator: undici awaits a promise per
 * chunk of an iterable body, and a 'drain' for most of them.
 */
function counted (request: FastifyRequest, limit: number): Readable {
  const req = request.raw
  let n = 0
  let piece: Buffer | null = null
  let filled = 0
  let pending: NodeJS.Immediate | null = null
  const pushPiece = (stream: Transform): void => {
    if (piece === null || filled === 0) return
    // A short remainder is copied out, not pushed as a view that would keep the whole piece alive.
    stream.push(filled === piece.length ? piece : filled < piece.length / 4 ? Buffer.from(piece.subarray(0, filled)) : piece.subarray(0, filled))
    piece = null
    filled = 0
  }
  const counter: Transform = new Transform({
    transform (chunk: Buffer, _encoding, callback) {
      n += chunk.length
      request.bodyBytesReceived = n
      // An error here makes undici abort the upstream request: the registry never sees a clean end. The
      // client's request is only unpiped, so that berth can still answer it (413).
      if (n > limit) { callback(new BodyTooLargeError(formatSize(limit))); return }
      for (let at = 0; at < chunk.length;) {
        piece ??= Buffer.allocUnsafeSlow(UPSTREAM_CHUNK)
        const copied = chunk.copy(piece, filled, at)
        filled += copied
        at += copied
        if (filled === piece.length) pushPiece(this)
      }
      if (filled > 0 && pending === null) pending = setImmediate(() => { pending = null; if (!counter.destroyed) pushPiece(counter) })
      callback()
    },
    flush (callback) {
      if (pending !== null) clearImmediate(pending)
      pushPiece(this)
      callback()
    },
    destroy (err, callback) {
      if (pending !== null) clearImmediate(pending)
      callback(err)
    }
  })
  req.pipe(counter)
  // A client that goes away mid-body must not look like a clean end to the registry either.
  req.once('close', () => { if (!req.complete) counter.destroy(new Error('client closed the connection mid-body')) })
  return counter
}
