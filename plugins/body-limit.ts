// nginx's client_max_body_size. Fastify's bodyLimit does not apply to a pass-through body, so berth counts:
// a Content-Length over the limit is refused here, before any upstream connection; a chunked body is
// counted while it streams (src/proxy/request-body.ts) and cut the moment it passes the limit.
import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { BodyTooLargeError } from '../src/errors.js'
import { formatSize } from '../src/config/units.js'

export default fp(async function bodyLimit (fastify) {
  fastify.addHook('onRequest', (request: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void) => {
    const limit = fastify.berthConfig.limits.maxBodySize
    const cl = request.headers['content-length']
    if (limit > 0 && cl !== undefined && Number(cl) > limit) {
      // The body is not read: the answer closes the connection (src/errors.ts).
      done(new BodyTooLargeError(formatSize(limit)))
      return
    }
    done()
  })
}, { name: 'berth-body-limit', fastify: '5.x', decorators: { fastify: ['berthConfig'] } })
