// nginx's client_max_body_size. Fastify's bodyLimit does not apply to a pass-through body, so berth counts:
// a Content-Length over the limit is refused before any upstream connection; a chunked body is counted
// while it streams and the upstream request is destroyed the moment it passes the limit.
import fp from 'fastify-plugin'
import type { IncomingMessage } from 'node:http'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { BodyTooLargeError } from '../src/errors.js'
import { formatSize } from '../src/config/units.js'

/**
 * What to send upstream: null (no body), the request itself (framed by Content-Length), or a counted
 * stream for chunked bodies (which also tells the metrics how many bytes came in).
 */
export function requestBody (request: FastifyRequest, limit: number): IncomingMessage | AsyncIterable<Buffer> | null {
  const req = request.raw
  const cl = req.headers['content-length']
  if (cl !== undefined) return cl === '0' ? null : req
  if (req.headers['transfer-encoding'] === undefined) return null
  return counted(request, limit > 0 ? limit : Infinity)
}

async function * counted (request: FastifyRequest, limit: number): AsyncIterable<Buffer> {
  const req = request.raw
  let n = 0
  // destroyOnReturn: false, so that an upstream failure does not take the client's connection with it.
  for await (const chunk of req.iterator({ destroyOnReturn: false })) {
    n += (chunk as Buffer).length
    request.bodyBytesReceived = n
    // Throwing here makes undici abort the upstream request: the registry never sees a clean end.
    if (n > limit) throw new BodyTooLargeError(formatSize(limit))
    yield chunk as Buffer
  }
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
