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
 * A chunked body, counted on its way through (also for the metrics). A stream, not an async generator:
 * undici awaits a promise per chunk of an iterable body, and a 'drain' for most of them.
 */
function counted (request: FastifyRequest, limit: number): Readable {
  const req = request.raw
  let n = 0
  const counter = new Transform({
    transform (chunk: Buffer, _encoding, callback) {
      n += chunk.length
      request.bodyBytesReceived = n
      // An error here makes undici abort the upstream request: the registry never sees a clean end. The
      // client's request is only unpiped, so that berth can still answer it (413).
      if (n > limit) { callback(new BodyTooLargeError(formatSize(limit))); return }
      callback(null, chunk)
    }
  })
  req.pipe(counter)
  // A client that goes away mid-body must not look like a clean end to the registry either.
  req.once('close', () => { if (!req.complete) counter.destroy(new Error('client closed the connection mid-body')) })
  return counter
}
