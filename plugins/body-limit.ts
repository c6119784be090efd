// nginx's client_max_body_size. Fastify's bodyLimit does not apply to a pass-through body, so berth counts:
// a Content-Length over the limit is refused before any upstream connection; a chunked body is counted
// while it streams and the upstream request is destroyed the moment it passes the limit.
import fp from 'fastify-plugin'
import { Transform, type Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { BodyTooLargeError } from '../src/errors.js'
import { formatSize } from '../src/config/units.js'

/**
 * What to send upstream: null (no body), the request itself (framed by Content-Length), or a counted
 * stream for chunked bodies (which also tells the metrics how many bytes came in).
 */
export function requestBody (request: FastifyRequest, limit: number): Readable | null {
  const req = request.raw
  const cl = req.headers['content-length']
  if (cl !== undefined) return cl === '0' ? null : req
  if (req.headers['transfer-encoding'] === undefined) return null
  return counted(request, limit > 0 ? limit : Infinity)
}

/**
 * A chunked body, counted on its way through. A stream, not an async generator: undici awaits a promise
 * per chunk of an iterable body (and a 'drain' for most of them), which made chunked uploads 0.7x nginx.
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

export default fp(async function bodyLimit (fastify) {
  fastify.decorateRequest('bodyBytesReceived', 0)
  fastify.addHook('onRequest', (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => {
    const limit = fastify.berthConfig.limits.maxBodySize
    const cl = request.headers['content-length']
    if (limit > 0 && cl !== undefined && Number(cl) > limit) {
      // The body is not read: close the connection rather than let Node drain hundreds of megabytes.
      reply.header('connection', 'close')
      done(new BodyTooLargeError(formatSize(limit)))
      return
    }
    done()
  })
}, { name: 'berth-body-limit', fastify: '5.x' })
