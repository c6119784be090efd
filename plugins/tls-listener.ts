// Per-connection TLS policy on the listener Fastify created from serverTlsOptions(): no client-initiated
// renegotiation (a CPU-exhaustion vector, and never needed by docker), handshake failures at debug level
// (a "bad certificate" alert is what an untrusted CA looks like from the server).
import fp from 'fastify-plugin'
import type { TLSSocket } from 'node:tls'
import type { Server } from 'node:https'
import { secureContextOptions } from '../src/tls.js'

export default fp(async function tlsListener (fastify) {
  if (!fastify.berthConfig.tls) {
    fastify.log.warn('no tls section: berth serves plain HTTP (development only; docker refuses to push without TLS unless the registry is marked insecure)')
    return
  }
  const server = fastify.server as Server
  server.on('secureConnection', (socket: TLSSocket) => { socket.disableRenegotiation() })
  // Reload: new certificates for new connections; open connections keep theirs.
  fastify.onReload({
    name: 'tls',
    async prepare (next) {
      const options = next.tls ? secureContextOptions(next.tls) : null
      return { commit () { if (options !== null) server.setSecureContext(options) } }
    }
  })
  server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
    fastify.log.debug({ err: { message: err.message, code: err.code }, client: socket.remoteAddress }, 'TLS handshake failed')
  })
}, { name: 'berth-tls-listener', fastify: '5.x', decorators: { fastify: ['berthConfig', 'onReload'] } })
